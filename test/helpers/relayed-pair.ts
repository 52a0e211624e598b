import assert from 'node:assert/strict';
import type { TestConfigDir } from './configs.js';
import { startFaultRelay, type FaultRelay } from './fault-relay.js';
import type { ServerLink } from './link.js';
import { CliProcess, ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive } from './processes.js';

/**
 * A commonserver and the groupclient of one group, as real processes, with a fault relay on
 * the path between them: a test can make that path silently dead, kill either end and start
 * it again. The server's common port is fixed (`bindPort` in the config), so that a restarted
 * server listens where the relays forward to. Both log at debug level: the lines say what each
 * side closed.
 */
export class RelayedPair {
  readonly processes = new ProcessSet();
  private readonly relays: FaultRelay[] = [];
  server!: CliProcess;
  serverLink!: ServerLink;
  client!: CliProcess;
  /** The relay of the latest client. */
  relay!: FaultRelay;

  constructor(
    private readonly config: TestConfigDir,
    private readonly commonPort: number,
    private readonly group: string,
  ) {}

  /** Starts (or restarts) the server on the fixed common port, and waits until it listens. */
  async startServer(): Promise<CliProcess> {
    const started = await startCommonServerProcess(this.config.serverFile);
    assert.equal(started.port, this.commonPort);
    this.server = this.processes.add(started.process);
    this.serverLink = started;
    return this.server;
  }

  /** Starts a groupclient through a fresh relay; resolves with its port table once active. */
  async startClientViaRelay(): Promise<Map<string, number>> {
    this.relay = await startFaultRelay(this.commonPort);
    this.relays.push(this.relay);
    this.client = this.processes.add(
      startGroupClientProcess({
        group: this.group,
        groupsDir: this.config.groupsDir,
        server: { ...this.serverLink, port: this.relay.port },
        extraArgs: ['--log-level', 'debug'],
      }),
    );
    return waitForGroupActive(this.client, this.group);
  }

  /**
   * Makes the path silently dead, then kills the client (-9): only the server's heartbeat
   * watchdog can tell. Resolves once the server has deactivated the group for that, failing
   * after `withinMs`, with the server's line count from before (for later waits on its lines).
   */
  async killClientBehindDeadPath(withinMs: number): Promise<number> {
    const fromLine = this.server.lines.length;
    this.relay.blackhole();
    await this.client.killHard();
    await this.server.waitForLine(new RegExp(`group ${this.group} deactivated \\(HEARTBEAT_TIMEOUT\\): no heartbeat for [\\d.]+m?s`), {
      fromLine,
      timeoutMs: withinMs,
    });
    return fromLine;
  }

  /**
   * Makes the path silently dead, then kills the server (-9): only the client's heartbeat
   * watchdog can tell. Resolves once the client has given up the session for that, failing
   * after `withinMs`, with the client's line count from before.
   */
  async killServerBehindDeadPath(withinMs: number): Promise<number> {
    const fromLine = this.client.lines.length;
    this.relay.blackhole();
    await this.server.killHard();
    await this.client.waitForLine(new RegExp(`group ${this.group} lost: no heartbeat from the server for [\\d.]+m?s; reconnecting`), {
      fromLine,
      timeoutMs: withinMs,
    });
    return fromLine;
  }

  async close(): Promise<void> {
    await this.processes.stopAll();
    await Promise.all(this.relays.map((relay) => relay.close()));
  }
}
