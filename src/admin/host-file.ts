import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { parseDocument } from 'yaml';
import { AllowLocal, DEFAULT_ALLOW_LOCAL, formatHostPort, type AppSpec, type GroupSpec, type HostPort } from '../config/index.js';
import type { AdminErrorCode } from './http-util.js';

/** What a host file says instead of the secret when it is printed without it. */
const SECRET_PLACEHOLDER = '${NTP_GROUP_SECRET}';

export interface HostFileOptions {
  /** The `server:` line when the group's file names none: where hosts reach the common port. */
  server: HostPort;
  /** `sha256:…` of the server's certificate; undefined on a plaintext server. */
  fingerprint: string | undefined;
  /** The secret itself (only for whoever holds the admin token or the server's files), else a `${VAR}` reference. */
  withSecret: boolean;
}

/** The registry cannot give the group's file (a cluster's registry lives in etcd). */
export class HostFileError extends Error {
  readonly code = 'HOSTFILE_UNAVAILABLE' satisfies AdminErrorCode;
}

/**
 * The host's file of a group: its identity only, since the apps come from the server's registry
 * (at login and on every change). The registry's copy less `apps:`, so what the operator wrote
 * for the host (`servers:`, trust, `logLevel:`) stays, with `server:`, the fingerprint of the
 * certificate the server really uses, the secret written in (a `secretFile:` on the server means
 * nothing on the host), and the `allowLocal:` the group's apps need unless one is written there.
 */
export async function hostFileText(spec: GroupSpec, options: HostFileOptions): Promise<string> {
  let text: string;
  try {
    text = await readFile(spec.file, 'utf8');
  } catch (error) {
    throw new HostFileError(
      `group "${spec.name}": its file ${spec.file} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    );
  }
  const doc = parseDocument(text);
  doc.delete('apps');
  if (!doc.has('server') && !doc.has('servers')) doc.set('server', formatHostPort(options.server));
  // The certificate in use wins over an older pin; a CA-based trust is left as the operator wrote it.
  if (options.fingerprint !== undefined && !doc.has('serverCa')) doc.set('serverFingerprint', options.fingerprint);
  doc.delete('secretFile');
  doc.set('secret', options.withSecret ? spec.secret.reveal() : SECRET_PLACEHOLDER);
  const { allowLocal, hostNames } = allowLocalFor(spec.apps);
  // An allowLocal the operator wrote in the registry's copy is for the host: it is left as written.
  if (allowLocal !== undefined && !doc.has('allowLocal')) {
    const list = doc.createNode(allowLocal);
    list.flow = true;
    doc.set('allowLocal', list);
  }
  const run = `# Its apps come from the server's registry, changed there; allowLocal bounds what the host dials.\n# Run on the host: groupclient --config ${spec.name}.yaml\n`;
  const unreachable = hostNames.map(
    (app) =>
      `# app ${app.name}: its local target ${formatHostPort(app.local)} is a host name, which allowLocal cannot allow: name an address in the registry\n`,
  );
  const header = options.withSecret
    ? `# Host file of group ${spec.name}: it holds the secret, keep it mode 600.\n`
    : `# Host file of group ${spec.name}, without its secret: give it as ${SECRET_PLACEHOLDER.slice(2, -1)} in the environment.\n`;
  return header + run + unreachable.join('') + doc.toString();
}

/**
 * The `allowLocal:` a host needs for `apps`: undefined while every target is loopback (the
 * default allows them), else the default's loopback ranges and each other target exactly
 * (consecutive ports of one address as one range, as a port range's apps are), so apps added
 * later on loopback still need no edit on the host. A target named by host name cannot be
 * allowed (allowLocal matches addresses only): it is returned apart.
 */
function allowLocalFor(apps: readonly AppSpec[]): { allowLocal: string[] | undefined; hostNames: AppSpec[] } {
  const loopback = AllowLocal.of(DEFAULT_ALLOW_LOCAL);
  const hostNames = apps.filter((app) => app.local.host !== 'localhost' && isIP(app.local.host) === 0);
  const ports = new Map<string, Set<number>>();
  for (const { local } of apps) {
    if (isIP(local.host) === 0 || loopback.refusal(local) === undefined) continue;
    ports.set(local.host, (ports.get(local.host) ?? new Set()).add(local.port));
  }
  const targets = [...ports].flatMap(([host, set]) =>
    portRuns([...set]).map(([from, to]) => formatHostPort({ host, port: from }) + (to === from ? '' : `-${to}`)),
  );
  return { allowLocal: targets.length === 0 ? undefined : [...DEFAULT_ALLOW_LOCAL, ...targets], hostNames };
}

/** Ports as runs of consecutive ones: [80, 81, 82, 90] is [[80, 82], [90, 90]]. */
function portRuns(ports: number[]): [number, number][] {
  const runs: [number, number][] = [];
  for (const port of ports.sort((a, b) => a - b)) {
    const last = runs.at(-1);
    if (last !== undefined && port === last[1] + 1) last[1] = port;
    else runs.push([port, port]);
  }
  return runs;
}
