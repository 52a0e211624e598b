import type { AppSpec, GroupSpec } from './group-file.js';
import type { Secret } from './secret.js';
import { vhostAppShape } from './vhost-app.js';

/** Which end reads a reloaded field, and when the new value takes effect there. */
export interface FieldEffect {
  /** On the commonserver; undefined when the server does not use the field. */
  readonly server?: string;
  /** On the groupclient; undefined when the client does not use the field. */
  readonly client?: string;
}

const AT_CLIENT_RESTART: FieldEffect = { client: 'applies when the groupclient restarts' };

/**
 * Every field of a group file other than its name and apps. The `Record` over the spec's keys
 * makes a new field fail to compile until someone says how a reload applies it.
 */
const GROUP_FIELDS: Record<Exclude<keyof GroupSpec, 'name' | 'apps' | 'ranges' | 'file' | 'secretInFile'>, FieldEffect> = {
  // The session that logged in with the old secret ends at once (it may be an intruder's).
  secret: { server: 'changed: the session that logged in with the old one ends now', client: 'applies at the next login' },
  secretFile: { server: 'is read from the new path (a changed secret ends the session)', client: 'applies at the next login' },
  // The server's apps are judged again at once: an app now outside is refused, one now inside served.
  allowLocal: { client: 'applies now, to the apps the server sent' },
  server: AT_CLIENT_RESTART,
  logLevel: { client: 'applies now (unless --log-level is given)' },
  servers: AT_CLIENT_RESTART,
  visitors: AT_CLIENT_RESTART,
  serverFingerprint: AT_CLIENT_RESTART,
  serverCaFile: AT_CLIENT_RESTART,
  plaintext: AT_CLIENT_RESTART,
  clientCertFile: AT_CLIENT_RESTART,
  clientKeyFile: AT_CLIENT_RESTART,
  route: AT_CLIENT_RESTART,
};

/** Every field of an app; `name` identifies the app across versions. */
const APP_FIELDS: Record<Exclude<keyof AppSpec, 'name'>, FieldEffect> = {
  local: { client: 'applies to the next user' },
  remotePort: { server: 'the app reopens on the new port (its connections close)' },
  type: { server: 'the app reopens with the new protocol (its connections or sessions close)', client: 'applies to the next user' },
  udp: { server: 'applies now (sessions beyond a lowered maxSessions keep running until idle)' },
  allow: { server: 'applies to the next user' },
  maxConnections: { server: 'applies to the next user' },
  pool: { server: 'the app leaves its old pool and joins the new one (its connections close)' },
  // The client restarts that app's checks from the state it last reported.
  healthCheck: { client: 'applies from the next check' },
  vhost: { server: 'applies to the next request; new names or type reopen the app (its conns close)' },
  // The header describes the local app's expectations: only the client, which dials it, reads it.
  proxyProtocol: { client: 'applies to the next user' },
  // One bucket per app shapes every user at once, so a new rate cannot wait for new users.
  bandwidth: { server: 'applies now, to live and new users' },
  visibility: { server: 'the app reopens, with or without its public port (its connections close)' },
  allowVisitors: { server: 'applies to the next visitor' },
  visitorSecret: { server: 'applies to the next visitor' },
};
const APP_ADDED: FieldEffect = { server: 'opens now', client: 'served from now on' };
const APP_REMOVED: FieldEffect = { server: 'closes now (its connections close)', client: 'no longer served' };

/**
 * commonserver.yaml is read once, at start (the CLI loads it before anything else and never
 * again); only the groups directory, or a cluster's etcd prefix, is reloaded.
 */
export const SERVER_CONFIG_EFFECT: FieldEffect = { server: 'applies when the commonserver restarts' };

/** Group fields the spec keeps under another name, so a reload compares them there. */
const GROUP_SPEC_NAMES: Readonly<Record<string, keyof typeof GROUP_FIELDS>> = {
  serverCa: 'serverCaFile',
  clientCert: 'clientCertFile',
  clientKey: 'clientKeyFile',
  // The host's way to the server: one route in the spec.
  proxy: 'route',
  transport: 'route',
  path: 'route',
};

/** The registry files a group as `<name>.yaml`: another name is another group. */
const GROUP_RENAMED: FieldEffect = { server: 'another name is another group (the old one is removed, its client disconnected)' };

export interface SpecChange {
  /** `secret`, `apps.web.allow`, `apps.web` (added or removed)... */
  readonly field: string;
  readonly effect: FieldEffect;
}

/** What differs between two versions of a group file, field by field, secrets compared in private. */
export function specChanges(before: GroupSpec, after: GroupSpec): SpecChange[] {
  const changes: SpecChange[] = [];
  for (const [field, effect] of Object.entries(GROUP_FIELDS) as [keyof typeof GROUP_FIELDS, FieldEffect][]) {
    const same =
      field === 'secret'
        ? before.secret.equals(after.secret)
        : field === 'route'
          ? sameRoute(before.route, after.route)
          : sameValue(before[field], after[field]);
    if (!same) changes.push({ field, effect });
  }
  const old = new Map(before.apps.map((app) => [app.name, app]));
  for (const app of after.apps) {
    const previous = old.get(app.name);
    old.delete(app.name);
    if (previous === undefined) {
      changes.push({ field: `apps.${app.name}`, effect: APP_ADDED });
      continue;
    }
    for (const [field, effect] of Object.entries(APP_FIELDS) as [keyof typeof APP_FIELDS, FieldEffect][]) {
      const same =
        field === 'vhost'
          ? sameVhost(previous.vhost, app.vhost)
          : field === 'visitorSecret'
            ? sameSecret(previous.visitorSecret, app.visitorSecret)
            : sameValue(previous[field], app[field]);
      if (!same) changes.push({ field: `apps.${app.name}.${field}`, effect });
    }
  }
  for (const name of old.keys()) changes.push({ field: `apps.${name}`, effect: APP_REMOVED });
  return changes;
}

/** Same in every field, app order included (the order is what the client is shown). */
export function sameGroupSpec(a: GroupSpec, b: GroupSpec): boolean {
  return specChanges(a, b).length === 0 && a.apps.every((app, i) => b.apps[i]?.name === app.name);
}

/** One line per change as `side` applies it, for the log lines of a reload. */
export function describeChanges(changes: readonly SpecChange[], side: keyof FieldEffect): string[] {
  return changes.flatMap(({ field, effect }) => (effect[side] === undefined ? [] : [`${field} ${effect[side]}`]));
}

/** The basic-auth password is a Secret (serialised as a mask): compared in private. */
function sameVhost(a: AppSpec['vhost'], b: AppSpec['vhost']): boolean {
  if (!sameValue(a, b)) return false;
  const before = a?.basicAuth?.password;
  const after = b?.basicAuth?.password;
  return before === undefined || after === undefined || before.equals(after);
}

/** A Secret serialises as a mask: compared in private, not by its JSON. */
function sameSecret(a: Secret | undefined, b: Secret | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.equals(b);
}

/** The proxy's password is a Secret (serialised as a mask): compared in private. */
function sameRoute(a: GroupSpec['route'], b: GroupSpec['route']): boolean {
  if (!sameValue(a, b)) return false;
  const before = a?.proxy?.password;
  const after = b?.proxy?.password;
  return before === undefined || after === undefined || before.equals(after);
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * How a reload applies the field of a group file at `path`, as written in the file
 * (`['apps', 'udp', 'maxSessions']`: a nested field takes its top field's effect); undefined
 * when no table here says, which the configuration reference refuses to guess.
 */
export function reloadEffect(path: readonly string[]): FieldEffect | undefined {
  const [field, appField] = path;
  if (field === 'name') return GROUP_RENAMED;
  if (field !== 'apps') return GROUP_FIELDS[GROUP_SPEC_NAMES[field!] ?? (field as keyof typeof GROUP_FIELDS)];
  if (appField === undefined) return { server: `an app added ${APP_ADDED.server}, one removed ${APP_REMOVED.server}`, client: 'serves the new list' };
  // specChanges() matches apps by name: a renamed app is one removed and one added.
  if (appField === 'name') return { server: `renamed: the old app ${APP_REMOVED.server} and the new one ${APP_ADDED.server}`, client: 'serves the new name' };
  // Every name-based routing field of an app lands in its spec's `vhost`.
  const specName = appField! in vhostAppShape({}) ? 'vhost' : (appField as keyof typeof APP_FIELDS);
  return APP_FIELDS[specName];
}
