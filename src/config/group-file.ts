import { basename, dirname, extname } from 'node:path';
import { APP_ACCESS_KEYS, parseAppAccess, parseServerTrust, SERVER_TRUST_KEYS, type AppAccess, type ServerTrust } from './group-security.js';
import type { Secret } from './secret.js';
import { parseSecret, readSecretFile } from './secret-source.js';
import { formatHostPort, parseHostPort, parsePort, type HostPort } from './values.js';
import { YamlFile } from './yaml-file.js';

export interface AppSpec extends AppAccess {
  readonly name: string;
  /** Where the groupclient dials on its own host. The server never sends this. */
  readonly local: HostPort;
  /** The public port on the commonserver; 0 lets the server choose and report it. */
  readonly remotePort: number;
}

export interface GroupSpec extends ServerTrust {
  readonly name: string;
  readonly secret: Secret;
  readonly apps: readonly AppSpec[];
  /** Client-side only: the commonserver to connect to, when not given on the command line. */
  readonly server?: HostPort;
  readonly file: string;
  /** The secret is written in the file itself (not `${VAR}`): the file must stay private. */
  readonly secretInFile?: boolean;
  /** Where the secret was read from (`secretFile:`, absolute), re-read at every reload. */
  readonly secretFile?: string;
}

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;
/** What a group name may be, in words for error messages. */
export const GROUP_NAME_RULE = 'letters, digits, "-", "_" or ".", starting with a letter or digit (at most 64)';

/**
 * The one rule for group names, shared by the config loader and the admin API: a name is also
 * a file name (`<groups>/<name>.yaml`), so it can never hold a "/", a NUL or start with ".".
 */
export function isGroupName(name: string): boolean {
  return NAME.test(name);
}

/** Why `name` is refused, quoting at most its start (it may be long or hold control characters). */
export function groupNameProblem(name: string): string {
  return `group name ${JSON.stringify(name.slice(0, 80))} is not valid: expected ${GROUP_NAME_RULE}`;
}
const GROUP_KEYS = ['name', 'secret', 'secretFile', 'apps', 'server', ...SERVER_TRUST_KEYS] as const;
const APP_KEYS = ['name', 'local', 'remotePort', ...APP_ACCESS_KEYS] as const;
export { MIN_SECRET_LENGTH, parseSecret } from './secret-source.js';

export interface GroupFileOptions {
  /** Where a relative `secretFile:` is found (default: the group file's directory). */
  baseDir?: string;
}

/**
 * Reads one group file (`<groups>/<name>.yaml`). The same file serves both ends: the server
 * takes the name, secret and public ports; the client takes the secret and local targets.
 */
export function loadGroupFile(file: string, env: NodeJS.ProcessEnv = process.env): GroupSpec {
  return parseGroupFile(YamlFile.read(file), env);
}

export function parseGroupFile(yaml: YamlFile, env: NodeJS.ProcessEnv = process.env, { baseDir = dirname(yaml.file) }: GroupFileOptions = {}): GroupSpec {
  const root = yaml.mapAt([], yaml.root());
  yaml.onlyKeys([], root, GROUP_KEYS);

  const name = root.name;
  if (typeof name !== 'string' || !isGroupName(name)) {
    throw yaml.error(['name'], `expected a group name of ${GROUP_NAME_RULE}`);
  }
  const stem = basename(yaml.file, extname(yaml.file));
  if (stem !== name && /\.ya?ml$/.test(yaml.file)) {
    throw yaml.error(['name'], `group "${name}" must live in a file named ${name}.yaml (found ${basename(yaml.file)})`);
  }

  if (root.secret !== undefined && root.secretFile !== undefined) {
    throw yaml.error(['secretFile'], 'secret and secretFile are alternatives: keep one');
  }
  const fromFile = root.secretFile === undefined ? undefined : readSecretFile(yaml, root.secretFile, baseDir);
  if (fromFile === undefined && root.secret === undefined) {
    throw yaml.error(['secret'], 'expected secret: (a literal, or ${VAR} to read it from the environment) or secretFile: PATH');
  }
  const secret = fromFile?.secret ?? parseSecret(yaml, root.secret, env);

  if (!Array.isArray(root.apps) || root.apps.length === 0) {
    throw yaml.error(['apps'], 'expected a list of at least one app');
  }
  const apps: AppSpec[] = [];
  const names = new Set<string>();
  const ports = new Map<number, string>();
  root.apps.forEach((raw: unknown, i: number) => {
    const app = yaml.mapAt(['apps', i], raw);
    yaml.onlyKeys(['apps', i], app, APP_KEYS);
    if (typeof app.name !== 'string' || !NAME.test(app.name)) {
      throw yaml.error(['apps', i, 'name'], 'expected an app name of letters, digits, "-", "_" or "."');
    }
    if (names.has(app.name)) throw yaml.error(['apps', i, 'name'], `duplicate app name "${app.name}"`);
    names.add(app.name);
    const local = yaml.expect(['apps', i, 'local'], parseHostPort(app.local));
    const remotePort = yaml.expect(['apps', i, 'remotePort'], parsePort(app.remotePort));
    const other = ports.get(remotePort);
    if (remotePort !== 0 && other !== undefined) {
      throw yaml.error(['apps', i, 'remotePort'], `port ${remotePort} is already used by app "${other}"`);
    }
    ports.set(remotePort, app.name);
    apps.push(Object.freeze({ name: app.name, local: Object.freeze(local), remotePort, ...parseAppAccess(yaml, ['apps', i], app) }));
  });

  const spec: GroupSpec = {
    name,
    secret,
    apps: Object.freeze(apps),
    file: yaml.file,
    secretInFile: typeof root.secret === 'string' && !root.secret.includes('${'),
    ...(fromFile ? { secretFile: fromFile.file } : {}),
    ...parseServerTrust(yaml, root),
    ...(root.server === undefined ? {} : { server: yaml.expect(['server'], parseHostPort(root.server)) }),
  };
  return Object.freeze(spec);
}

export function describeApps(spec: GroupSpec): string {
  return spec.apps.map((app) => `${app.name} ${formatHostPort(app.local)}`).join(', ');
}

/** Where a group's secret is read from, in words (never the secret itself). */
export function describeSecretSource(spec: GroupSpec): string {
  if (spec.secretFile !== undefined) return `secret read from ${spec.secretFile} (private to its owner)`;
  return spec.secretInFile ? 'secret written in the file' : 'secret from the environment';
}
