import {
  describeSecretSource,
  Findings,
  formatHostPort,
  loadGroupFile,
  MAX_POOLED_WORK_CONNS_LIMIT,
  parseCount,
  parseHostPort,
  permissionWarning,
  type HostPort,
} from '../config/index.js';
import { clientTransport } from './tls.js';

/** What `groupclient verify` is given: the run command's own options, unparsed. */
export interface ClientVerifyOptions {
  /** The group file (`--config`, or `<groups>/<group>.yaml`). */
  file: string;
  /** `--group`: the name the file must define. */
  group?: string;
  server?: string;
  serverFingerprint?: string;
  plaintext?: boolean;
  maxPooledWorkConns?: string;
}

export const DEFAULT_SERVER: HostPort = Object.freeze({ host: '127.0.0.1', port: 7000 });

/**
 * `groupclient verify`: checks the group file (secret present, long enough, a secretFile
 * private to its owner), its local targets, the server address and how the server will be
 * verified, without connecting anywhere. Every finding is collected.
 */
export function verifyGroupClient(options: ClientVerifyOptions, env: NodeJS.ProcessEnv = process.env): Findings {
  const findings = new Findings();
  const spec = findings.attempt('group file', () => loadGroupFile(options.file, env));
  if (spec !== undefined) {
    if (options.group !== undefined && spec.name !== options.group) {
      findings.problem('group file', `${options.file} defines group "${spec.name}", not "${options.group}"`);
    } else {
      findings.ok('group file', `${options.file}: group ${spec.name}, ${describeSecretSource(spec)}`);
    }
    const secretWarning = spec.secretInFile ? permissionWarning(spec.file, `the secret of group ${spec.name}`) : undefined;
    if (secretWarning) findings.warning('group file', secretWarning);
    for (const app of spec.apps) {
      findings.ok(`app ${app.name}`, `dials ${formatHostPort(app.local)}; public port ${app.remotePort === 0 ? 'chosen by the server' : app.remotePort}`);
    }
  }

  if (options.server !== undefined) {
    const parsed = parseHostPort(options.server);
    if (parsed.ok) findings.ok('server', `${formatHostPort(parsed.value)} (--server)`);
    else findings.problem('server', `--server: ${parsed.problem}`);
  } else if (spec?.server !== undefined) {
    findings.ok('server', `${formatHostPort(spec.server)} (the file's server:)`);
  } else if (spec !== undefined) {
    findings.ok('server', `${formatHostPort(DEFAULT_SERVER)} (the default: give --server or server: in the file)`);
  }

  if (spec !== undefined) {
    const transport = findings.attempt('TLS', () =>
      clientTransport(spec, {
        ...(options.serverFingerprint !== undefined ? { fingerprint: options.serverFingerprint } : {}),
        plaintext: options.plaintext === true,
      }),
    );
    if (transport?.kind === 'plain') findings.warning('TLS', 'plaintext: the link to the commonserver is not encrypted');
    else if (transport?.fingerprint !== undefined) findings.ok('TLS', `pins the server's certificate ${transport.fingerprint}`);
    else if (transport?.ca !== undefined) findings.ok('TLS', `trusts ${spec.serverCaFile} for the server's certificate`);
    else if (transport !== undefined) {
      findings.warning('TLS', "no serverFingerprint or serverCa: the server's certificate is checked against the system's CAs, and a self-signed commonserver is refused (pin the fingerprint commonserver init prints)");
    }
  }

  if (options.maxPooledWorkConns !== undefined) {
    const parsed = parseCount(options.maxPooledWorkConns, { min: 0, max: MAX_POOLED_WORK_CONNS_LIMIT });
    if (!parsed.ok) findings.problem('--max-pooled-work-conns', parsed.problem);
  }
  return findings;
}
