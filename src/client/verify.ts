import { describeSecretSource, Findings, formatHostPort, loadGroupFile, parseClientCounts, parseHostPort, permissionWarning } from '../config/index.js';
import type { ClientCountOption, GroupSpec } from '../config/index.js';
import { dialTcp } from '../net/index.js';
import { routedByName } from './client-status.js';
import { clientEndpoints } from './endpoints.js';
import { ServerTrustError } from './errors.js';
import type { ServerEndpoint } from './group-client.js';
import { dialCommon } from './tls.js';
import { describeRoute } from './route-dial.js';

/** What `groupclient verify` is given: the run command's own options, unparsed. */
export interface ClientVerifyOptions {
  /** The group file (`--config`, or `<groups>/<group>.yaml`). */
  file: string;
  /** `--group`: the name the file must define. */
  group?: string;
  server?: string;
  serverFingerprint?: string;
  plaintext?: boolean;
  /** `--proxy URL`, unparsed. */
  proxy?: string;
  /** `--max-pooled-work-conns`, `--max-mux-streams`, unparsed. */
  counts?: Partial<Record<ClientCountOption, string>>;
}

/** How long `verify` waits for a local target to accept. */
export const VERIFY_DIAL_TIMEOUT_MS = 2_000;

/**
 * `groupclient verify`: checks the group file (secret present, long enough, a secretFile
 * private to its owner), where its apps come from (the server's registry) and what
 * allowLocal lets the host dial, its own local targets (each TCP one dialed: "ok" only when
 * something accepted), the server address, how the server will be verified, and that the
 * server answers and proves itself (it does not log in: a login would take the group over).
 * Every finding is collected.
 */
export async function verifyGroupClient(options: ClientVerifyOptions, env: NodeJS.ProcessEnv = process.env): Promise<Findings> {
  const findings = new Findings();
  const spec = findings.attempt('group file', () => loadGroupFile(options.file, env, { anyFileName: true }));
  if (spec !== undefined) {
    if (options.group !== undefined && spec.name !== options.group) {
      findings.problem('group file', `${options.file} defines group "${spec.name}", not "${options.group}"`);
    } else {
      findings.ok('group file', `${options.file}: group ${spec.name}, ${describeSecretSource(spec)}`);
    }
    const secretWarning = spec.secretInFile ? permissionWarning(spec.file, `the secret of group ${spec.name}`) : undefined;
    if (secretWarning) findings.warning('group file', secretWarning);
    findings.ok('apps', appsSource(spec));
    await checkLocalTargets(spec, findings);
  }

  if (spec !== undefined) {
    const trust = {
      ...(options.serverFingerprint !== undefined ? { serverFingerprint: options.serverFingerprint } : {}),
      ...(options.proxy !== undefined ? { proxy: options.proxy } : {}),
      plaintext: options.plaintext === true,
    };
    let endpoints = findings.attempt('TLS', () => clientEndpoints(spec, { ...(options.server !== undefined ? { server: options.server } : {}), ...trust }));
    const serverProblem = endpoints?.ok === false && endpoints.problem.startsWith('--server:') ? endpoints.problem : undefined;
    const badServer = serverProblem !== undefined;
    if (badServer) {
      findings.problem('server', serverProblem);
      // How the servers would be trusted is still checked, against the file's own.
      endpoints = findings.attempt('TLS', () => clientEndpoints(spec, trust));
    }
    if (endpoints?.ok === false) findings.problem('TLS', endpoints.problem);
    else if (endpoints !== undefined) {
      const from =
        options.server !== undefined
          ? '--server'
          : spec.servers !== undefined
            ? "the file's servers:"
            : spec.server !== undefined
              ? "the file's server:"
              : 'the default: give --server or server: in the file';
      if (!badServer) findings.ok('server', `${endpoints.value.map(({ server }) => formatHostPort(server)).join(', ')} (${from})`);
      const route = endpoints.value[0]?.transport.route;
      if (route !== undefined) findings.ok('route', `over ${describeRoute(route)}`);
      for (const { server, transport } of endpoints.value) {
        const which = endpoints.value.length > 1 ? `TLS to ${formatHostPort(server)}` : 'TLS';
        if (transport.kind === 'plain') findings.warning(which, 'plaintext: the link to the commonserver is not encrypted');
        else if (transport.fingerprint !== undefined) findings.ok(which, `pins the server's certificate ${transport.fingerprint}`);
        else if (transport.ca !== undefined) findings.ok(which, `trusts ${spec.serverCaFile} for the server's certificate`);
        else {
          findings.warning(
            which,
            "no serverFingerprint or serverCa: the server's certificate is checked against the system's CAs, and a self-signed commonserver is refused (pin the fingerprint commonserver init prints)",
          );
        }
      }
      if (!badServer) await checkServers(endpoints.value, findings);
    }
  } else if (options.server !== undefined) {
    for (const item of options.server.split(',')) {
      const parsed = parseHostPort(item);
      if (!parsed.ok) findings.problem('server', `--server: ${parsed.problem}`);
    }
  }

  const counts = parseClientCounts(options.counts ?? {});
  if (!counts.ok) findings.problem(`--${counts.option}`, counts.problem);
  return findings;
}

/**
 * Dials every TCP app's local target at once: one that accepts is "ok", one that does not is a
 * warning about the host now (the app may be started later), which leaves the exit code alone.
 * A UDP target has no handshake to try.
 */
async function checkLocalTargets(spec: GroupSpec, findings: Findings): Promise<void> {
  const dials = spec.apps.map(async (app) => {
    const target = formatHostPort(app.local);
    const reached = app.vhost !== undefined ? routedByName(app.vhost) : `public port ${app.remotePort === 0 ? 'chosen by the server' : app.remotePort}`;
    if (app.type === 'udp') return () => findings.ok(`app ${app.name}`, `sends to ${target}/udp (UDP: not dialed); ${reached}/udp`);
    try {
      (await dialTcp(app.local, VERIFY_DIAL_TIMEOUT_MS)).destroy();
      return () => findings.ok(`app ${app.name}`, `dials ${target}: something listens; ${reached}`);
    } catch (error) {
      // The dial's message starts with the target, said already.
      const why = (error as Error).message.replace(`${target}: `, '');
      return () => findings.warning(`app ${app.name}`, `nothing listens on ${target} (${why}); ${reached}`, { now: true });
    }
  });
  // Reported in the file's order, whichever dial answered first.
  for (const report of await Promise.all(dials)) report();
}

/** Where the apps come from: the server, at login and on every change, inside allowLocal. */
function appsSource(spec: GroupSpec): string {
  const bound = `allowLocal (${spec.allowLocal.texts.join(', ') || 'nothing'}) bounds what this host dials for them`;
  return spec.apps.length === 0
    ? `none in this file: the server sends them at login and on every change; ${bound}`
    : `the server's list applies at login and on every change (an app this file says otherwise is a warning naming it); ${bound} beyond this file's own targets`;
}

/**
 * Dials each server and, over TLS, checks its certificate as a login would: a server that
 * proves to be another (a pin that differs, a CA that does not vouch) is a problem; one that
 * does not answer is a warning about now (the groupclient keeps retrying), which leaves the
 * exit code alone.
 */
async function checkServers(endpoints: readonly ServerEndpoint[], findings: Findings): Promise<void> {
  const dials = endpoints.map(async ({ server, transport }) => {
    const where = formatHostPort(server);
    const subject = endpoints.length > 1 ? `server ${where}` : 'server link';
    try {
      (await dialCommon(server, transport, VERIFY_DIAL_TIMEOUT_MS)).destroy();
      const proof = transport.kind === 'plain' ? 'answers (plaintext)' : 'answers over TLS and its certificate is the one trusted';
      return () => findings.ok(subject, `${where} ${proof}`);
    } catch (error) {
      if (error instanceof ServerTrustError) return () => findings.problem(subject, error.message);
      const why = (error as Error).message.replace(`${where}: `, '');
      return () => findings.warning(subject, `nothing answers on ${where} (${why}): the groupclient keeps trying`, { now: true });
    }
  });
  for (const report of await Promise.all(dials)) report();
}
