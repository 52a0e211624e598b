import { ReplaySubject } from 'rxjs';
import { GroupClient, type ClientEvent, type GroupClientOptions } from '../../src/client/index.js';
import { loadGroupFile, loadServerConfig, type GroupSpec } from '../../src/config/index.js';
import { CommonServer, type ServerEvent } from '../../src/server/index.js';
import type { TestConfigDir } from './configs.js';

/** A CommonServer in this process, on the test config dir; `events` replays everything. */
export async function startServer(config: TestConfigDir): Promise<{ server: CommonServer; port: number; events: ReplaySubject<ServerEvent> }> {
  const server = new CommonServer(loadServerConfig(config.serverFile));
  const events = new ReplaySubject<ServerEvent>();
  server.events$.subscribe(events);
  for (const name of await groupNames(config)) server.registerGroup(loadGroupFile(config.groupFile(name)));
  const { port } = await server.listen();
  return { server, port, events };
}

async function groupNames(config: TestConfigDir): Promise<string[]> {
  const { readdirSync } = await import('node:fs');
  return readdirSync(config.groupsDir)
    .filter((file) => file.endsWith('.yaml'))
    .map((file) => file.slice(0, -'.yaml'.length));
}

/** A GroupClient in this process; `events` replays everything, `done` is its run(). */
export function startClient(
  spec: GroupSpec,
  port: number,
  options: Partial<GroupClientOptions> = {},
): { client: GroupClient; events: ReplaySubject<ClientEvent>; done: Promise<void> } {
  const client = new GroupClient({
    spec,
    server: { host: '127.0.0.1', port },
    clientId: options.clientId ?? `test-client-${spec.name}`,
    reconnect: { minDelayMs: 50, maxDelayMs: 500, factor: 2 },
    ...options,
  });
  const events = new ReplaySubject<ClientEvent>();
  client.events$.subscribe(events);
  const done = client.run();
  done.catch(() => {}); // tests that expect a rejection await `done` themselves
  return { client, events, done };
}
