import { ReplaySubject } from 'rxjs';
import { GroupClient, type ClientEvent, type GroupClientOptions } from '../../src/client/index.js';
import { loadGroupDirectory, loadServerConfig, type GroupSpec } from '../../src/config/index.js';
import type { ClientTransport } from '../../src/net/index.js';
import { CommonServer, loadServerTransport, type CommonServerOptions, type ServerEvent } from '../../src/server/index.js';
import { logSink } from './artifacts.js';
import type { TestConfigDir } from './configs.js';
import { clientTransportFor, type ServerLink } from './link.js';

export interface StartedServer {
  server: CommonServer;
  port: number;
  events: ReplaySubject<ServerEvent>;
  /** `sha256:...` of the server's certificate when the config has TLS on (the default). */
  fingerprint?: string;
}

export interface StartedClient {
  client: GroupClient;
  events: ReplaySubject<ClientEvent>;
  done: Promise<void>;
}

/**
 * A CommonServer in this process, on the test config dir (TLS when the config says so);
 * `events` replays everything, and every event is logged for the suite's secret scan.
 */
export async function startServer(config: TestConfigDir, overrides: Partial<CommonServerOptions> = {}): Promise<StartedServer> {
  const serverConfig = loadServerConfig(config.serverFile);
  const { transport, fingerprint } = loadServerTransport(serverConfig.tls);
  const server = new CommonServer({ ...serverConfig, transport, ...overrides });
  const events = new ReplaySubject<ServerEvent>();
  const log = logSink('in-process-server');
  server.events$.subscribe((event) => log(JSON.stringify(event)));
  server.events$.subscribe(events);
  // As the CLI loads them: pooled apps get their pool's port, conflicts are refused.
  const { groups, errors } = loadGroupDirectory(config.groupsDir, process.env, new Map(), serverConfig);
  if (errors.length > 0) throw errors[0]!;
  for (const spec of groups) server.registerGroup(spec);
  const { port } = await server.listen();
  return { server, port, events, ...(fingerprint ? { fingerprint } : {}) };
}

/**
 * A GroupClient in this process for `server` (a StartedServer, or `{ ...started, port }` through
 * a relay): TLS pinned to its fingerprint, plaintext if it has none. A bare port needs an
 * explicit `options.transport`. `events` replays everything, `done` is its run().
 */
export function startClient(spec: GroupSpec, server: ServerLink, options?: Partial<GroupClientOptions>): StartedClient;
export function startClient(spec: GroupSpec, port: number, options: Partial<GroupClientOptions> & { transport: ClientTransport }): StartedClient;
export function startClient(spec: GroupSpec, server: ServerLink | number, options: Partial<GroupClientOptions> = {}): StartedClient {
  const link = typeof server === 'number' ? { port: server } : server;
  const client = new GroupClient({
    spec,
    server: { host: '127.0.0.1', port: link.port },
    clientId: options.clientId ?? `test-client-${spec.name}`,
    reconnect: { minDelayMs: 50, maxDelayMs: 500, factor: 2 },
    transport: clientTransportFor(link),
    ...options,
  });
  const events = new ReplaySubject<ClientEvent>();
  const log = logSink(`in-process-client-${spec.name}`);
  client.events$.subscribe((event) => log(JSON.stringify(event)));
  client.events$.subscribe(events);
  const done = client.run();
  done.catch(() => {}); // tests that expect a rejection await `done` themselves
  return { client, events, done };
}
