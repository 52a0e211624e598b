import { basename, dirname, extname } from 'node:path';
import { z } from 'zod';
import { allowLocalSchema, DEFAULT_ALLOW_LOCAL, AllowLocal } from './allow-local.js';
import { appTrafficShape } from './app-traffic.js';
import { GROUP_NAME_RULE, NAME_PATTERN } from './group-name.js';
import { appAccessShape, serverTrust, serverTrustShape } from './group-security.js';
import { healthCheckSchema, poolMembership, poolName } from './pool-config.js';
import { secretFilePath, secretFromFile, secretValue } from './secret-source.js';
import { section } from './sections.js';
import { serverRoute, serverRouteShape } from './server-route.js';
import { appKind } from './app-kind.js';
import { appType } from './app-type.js';
import { portKey, portLabel, udpAppShape } from './udp-app.js';
import { fileAppIndex, localField, rangePorts, remotePortField, type AppRange } from './port-range.js';
import { hostPort, logLevel, type HostPort } from './values.js';
import { vhostAppShape } from './vhost-app.js';
import { appVisibility, appVisibilityShape, visitorsSchema, type VisitorSpec } from './visitors.js';
import { YamlFile } from './yaml-file.js';

const APP_NAME_EXPECTED = 'expected an app name of letters, digits, "-", "_" or "."';

/** One app of a group file: a TCP or UDP app with its own public port, or a vhost app reached by name. */
function appSchema(env: NodeJS.ProcessEnv) {
  return section({
    name: z
      .string(APP_NAME_EXPECTED)
      .regex(NAME_PATTERN, APP_NAME_EXPECTED)
      .meta({ examples: ['ssh'] }),
    local: localField,
    type: appType,
    remotePort: remotePortField.optional().meta({
      description:
        "tcp and udp apps: the public port on the commonserver; 0 lets the server choose and report it. A pooled app may leave it out: the pool's port. A range such as 6000-6010 (with a local range of the same length) is one app per port, named NAME-6000 ...",
      examples: [6022],
    }),
    pool: poolName.optional(),
    healthCheck: healthCheckSchema.optional(),
    ...appAccessShape,
    ...udpAppShape,
    ...vhostAppShape(env),
    ...appTrafficShape,
    ...appVisibilityShape(env),
  }).transform(({ name, local, remotePort, allow, proxyProtocol, bandwidth, pool, healthCheck, visibility, allowVisitors, visitorSecret, ...kind }, ctx) => {
    const ports = rangePorts({ remotePort, local, type: kind.type, pool }, ctx);
    const visibilityRules = appVisibility(
      { visibility, allowVisitors, visitorSecret, type: kind.type, remotePort: remotePort === undefined ? undefined : 0, pool },
      ctx,
    );
    // A private app opens no port (0, as for a vhost app); a pooled tcp app may leave its port to
    // the pool (0 here: filled in when the server registers it).
    const noPort = (visibility === 'private' && kind.type !== 'http' && kind.type !== 'https') || (pool !== undefined && kind.type === 'tcp');
    const one = (appName: string, at: { remotePort: number | undefined; local: HostPort }) => ({
      name: appName,
      local: at.local,
      ...(allow === undefined ? {} : { allow }),
      ...(kind.maxConnections === undefined ? {} : { maxConnections: kind.maxConnections }),
      ...(proxyProtocol === undefined ? {} : { proxyProtocol }),
      ...(bandwidth === undefined ? {} : { bandwidth }),
      ...appKind({ ...kind, remotePort: at.remotePort ?? (noPort ? 0 : undefined), traffic: { proxyProtocol, bandwidth } }, ctx),
      ...poolMembership({ type: kind.type, pool, healthCheck }, ctx),
      ...visibilityRules,
    });
    if ('single' in ports) return { apps: [one(name, ports.single)] };
    const expanded = ports.ports.map((at) => one(`${name}-${at.remotePort}`, at));
    const tooLong = expanded.find((app) => !NAME_PATTERN.test(app.name));
    if (tooLong !== undefined)
      ctx.addIssue({ code: 'custom', path: ['name'], message: `the range's app names (such as "${tooLong.name}") must be at most 64 characters` });
    return { apps: expanded, range: { name, from: ports.ports[0]?.remotePort ?? 0, to: ports.ports.at(-1)?.remotePort ?? 0 } };
  });
}

/**
 * One app. For a pooled tcp app, `remotePort` is the pool's port once the server's registry
 * loaded it (0 until then), and `healthCheck` is always set on a pooled app (a TCP check by default).
 */
export type AppSpec = z.output<ReturnType<typeof appSchema>>['apps'][number];

/** Where the file is and what it may refer to: the environment and relative paths. */
export interface GroupFileContext {
  /** The file's name; a `.yaml` name must be `<group name>.yaml`. */
  file: string;
  env: NodeJS.ProcessEnv;
  /** Where a relative `secretFile:` is found (default: the group file's directory). */
  baseDir: string;
  /**
   * A host's file: any name will do (the name inside is the group's) and `apps:` may be left
   * to the server. Else `<name>.yaml` with at least one app, the registry's rule.
   */
  anyFileName?: boolean;
}

/** A cluster node in a group file's `servers:` list. */
export interface ClusterServer {
  readonly address: HostPort;
  /** This node's certificate; else the file's serverFingerprint / serverCa. */
  readonly fingerprint?: string;
}

const SERVERS_EXPECTED = 'expected a list of "host:port" (or { address, fingerprint }) of the cluster\'s nodes';

/** `"a:7000"` or `{ address: "b:7000", fingerprint: "sha256:..." }` (a bare string is its address). */
const clusterServer = z.preprocess(
  (value) => (typeof value === 'string' ? { address: value } : value),
  section({ address: hostPort(), fingerprint: serverTrustShape('.').serverFingerprint }).transform(({ address, fingerprint }): ClusterServer =>
    fingerprint === undefined ? { address } : { address, fingerprint },
  ),
);

/**
 * One group file (`<groups>/<name>.yaml`). The same file serves both ends: the server takes the
 * name, secret and public ports; the client takes the secret and local targets.
 */
export function groupFileSchema({ file, env, baseDir, anyFileName = false }: GroupFileContext) {
  const groupName = `expected a group name of ${GROUP_NAME_RULE}`;
  return section({
    name: z
      .string(groupName)
      .regex(NAME_PATTERN, groupName)
      .meta({ examples: ['office-a'] }),
    secret: secretValue(env)
      .optional()
      .meta({ examples: ['${OFFICE_A_SECRET}'] }),
    secretFile: secretFilePath.optional(),
    apps: z
      .array(appSchema(env), 'expected a list of at least one app')
      .min(1, 'expected a list of at least one app')
      .optional()
      .meta({ description: "The group's apps. Required in the server's registry; a host's file may leave them to the server, which sends them at login" }),
    allowLocal: allowLocalSchema.optional(),
    server: hostPort().optional().meta({ description: 'Client side: the commonserver, when not given on the command line' }),
    logLevel: logLevel.optional(),
    servers: z
      .array(clusterServer, SERVERS_EXPECTED)
      .min(1, SERVERS_EXPECTED)
      .optional()
      .meta({ description: "Client side: a cluster's nodes, tried in turn, each with its own pinned certificate if given" }),
    ...serverTrustShape(dirname(file)),
    visitors: visitorsSchema(env).optional(),
    ...serverRouteShape(env),
  })
    .meta({ title: 'Group file', description: 'One appGroup: its name, secret and apps (local host:port to public port)' })
    .transform(({ name, secret, secretFile, apps = [], allowLocal, server, servers, logLevel: level, visitors, proxy, transport, path, ...trust }, ctx) => {
      // The registry's entry is where a group's apps come from; a host's file only names itself.
      if (!anyFileName && apps.length === 0) ctx.addIssue({ code: 'custom', path: ['apps'], message: 'expected a list of at least one app' });
      if (server !== undefined && servers !== undefined)
        ctx.addIssue({ code: 'custom', path: ['servers'], message: 'server and servers are alternatives: keep one' });
      const stem = basename(file, extname(file));
      if (!anyFileName && stem !== name && /\.ya?ml$/.test(file)) {
        ctx.addIssue({ code: 'custom', path: ['name'], message: `group "${name}" must live in a file named ${name}.yaml (found ${basename(file)})` });
      }
      if (secret !== undefined && secretFile !== undefined)
        ctx.addIssue({ code: 'custom', path: ['secretFile'], message: 'secret and secretFile are alternatives: keep one' });
      const fromFile = secretFile === undefined || secret !== undefined ? undefined : secretFromFile(secretFile, baseDir, ctx, ['secretFile']);
      const source = fromFile ?? secret;
      if (source === undefined && secretFile === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['secret'],
          message: 'expected secret: (a literal, or ${VAR} to read it from the environment) or secretFile: PATH',
        });
      }
      const ranges = apps.flatMap((entry, index): AppRange[] => (entry.range === undefined ? [] : [Object.freeze({ index, ...entry.range })]));
      const expanded = apps.flatMap((entry) => entry.apps);
      checkAppsDiffer(expanded, ranges, ctx);
      return Object.freeze({
        name,
        // No source means an issue was added above: zod discards this result.
        secret: source?.secret ?? z.NEVER,
        apps: Object.freeze(expanded.map((one) => Object.freeze({ ...one, local: Object.freeze(one.local) }))),
        /** The file's port ranges, each expanded in `apps` to one app per port; absent when the file has none. */
        ...(ranges.length === 0 ? {} : { ranges: Object.freeze(ranges) as readonly AppRange[] }),
        file,
        /** Client side: the local targets apps from the server may name (loopback only by default). */
        allowLocal: allowLocal ?? AllowLocal.of(DEFAULT_ALLOW_LOCAL),
        /** The secret is written in the file itself (not `${VAR}`): the file must stay private. */
        secretInFile: source?.literal ?? false,
        /** Where the secret was read from (`secretFile:`, absolute), re-read at every reload. */
        ...(fromFile ? { secretFile: fromFile.file } : {}),
        ...serverTrust(trust, ctx),
        /** Client-side only: how its conns reach the server (a proxy, a WebSocket carrier). */
        ...serverRoute({ proxy, transport, path }, ctx),
        /** Client-side only: the commonserver to connect to, when not given on the command line. */
        ...(server === undefined ? {} : { server }),
        /** Client-side only: what the groupclient prints (`--log-level` overrides it); info when unset. */
        ...(level === undefined ? {} : { logLevel: level }),
        /** Client-side only: the nodes of a cluster, tried in turn. */
        ...(servers === undefined ? {} : { servers: Object.freeze(servers) as readonly ClusterServer[] }),
        /** Client-side only: local ports whose users visit other groups' private apps. */
        ...(visitors === undefined || visitors.length === 0 ? {} : { visitors: Object.freeze(visitors) as readonly VisitorSpec[] }),
      });
    });
}

export type GroupSpec = z.output<ReturnType<typeof groupFileSchema>>;

/** Names and ports unique within the group, ranges expanded (each issue at the file's entry). */
function checkAppsDiffer(apps: readonly AppSpec[], ranges: readonly AppRange[], ctx: z.RefinementCtx): void {
  const names = new Set<string>();
  // Keyed by port and protocol: a TCP app and a UDP app may share a port number.
  const ports = new Map<string, string>();
  const pools = new Map<string, string>();
  apps.forEach((one, index) => {
    const i = fileAppIndex(ranges, index);
    const sharing = one.pool === undefined ? undefined : pools.get(one.pool);
    if (sharing !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['apps', i, 'pool'],
        message: `app "${sharing}" of this group is already in pool "${one.pool}" (one app per group and pool)`,
      });
    if (one.pool !== undefined) pools.set(one.pool, one.name);
    if (names.has(one.name)) ctx.addIssue({ code: 'custom', path: ['apps', i, 'name'], message: `duplicate app name "${one.name}"` });
    names.add(one.name);
    const other = ports.get(portKey(one));
    if (one.remotePort !== 0 && other !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['apps', i, 'remotePort'], message: `port ${portLabel(one)} is already used by app "${other}"` });
    }
    ports.set(portKey(one), one.name);
  });
}

export interface GroupFileOptions {
  /** Where a relative `secretFile:` is found (default: the group file's directory). */
  baseDir?: string;
  /** A host's file: any name will do (see GroupFileContext). */
  anyFileName?: boolean;
}

export function loadGroupFile(file: string, env: NodeJS.ProcessEnv = process.env, options: GroupFileOptions = {}): GroupSpec {
  return parseGroupFile(YamlFile.read(file), env, options);
}

export function parseGroupFile(
  yaml: YamlFile,
  env: NodeJS.ProcessEnv = process.env,
  { baseDir = dirname(yaml.file), anyFileName = false }: GroupFileOptions = {},
): GroupSpec {
  return yaml.parse(groupFileSchema({ file: yaml.file, env, baseDir, anyFileName }));
}

/** Where a group's secret is read from, in words (never the secret itself). */
export function describeSecretSource(spec: GroupSpec): string {
  if (spec.secretFile !== undefined) return `secret read from ${spec.secretFile} (private to its owner)`;
  return spec.secretInFile ? 'secret written in the file' : 'secret from the environment';
}
