import { setTimeout as sleep } from 'node:timers/promises';
import type { Results } from './checks.js';
import { waitUntil } from './deadline.js';
import { startTransferApp, type SinkEnd, type TransferApp } from './transfer-app.js';
import { openTunnel, type Tunnel, type TunnelOptions } from './tunnel.js';
import { countOutcomes, runUsersWithFault, type FaultRun, type Outcome } from './users.js';

export interface TransferSettings {
  users: number;
  bytes: number;
  /** Each user's stream is spread over at least this long (see sendStream). */
  spreadMs: number;
  /** Bound on the transfers before the fault. */
  deadlineMs: number;
}

/** Scenario 5's bound: a signalled process is gone within this. */
export const EXIT_BOUND_MS = 5000;
/** How long users get to end after a process fault before they count as left open. */
const PROCESS_SETTLE_MS = 10_000;

const KERNEL_FIN = 'not asserted: the killed process runs no code, so the kernel closes its sockets, with a FIN when nothing was left unread';

/**
 * Scenarios 1 and 5: bulk users through the tunnel, then one of its processes gets `signal`
 * mid-transfer. A user must end complete or reset, never with a clean FIN short of its bytes;
 * so must an upload at the local app (where the victim is not the process facing it).
 */
export async function processFault(
  results: Results,
  scenario: string,
  victim: 'server' | 'client',
  signal: 'SIGKILL' | 'SIGTERM',
  settings: TransferSettings,
): Promise<void> {
  let exitMs = Number.NaN;
  const killVictim = async (tunnel: Tunnel): Promise<void> => {
    const cli = victim === 'server' ? tunnel.server : tunnel.client;
    const started = Date.now();
    cli.kill(signal);
    const exited = await Promise.race([cli.exited.then(() => true), sleep(EXIT_BOUND_MS + 2000).then(() => false)]);
    if (exited) exitMs = Date.now() - started;
    else await cli.killHard();
  };
  await transferFault({}, settings, PROCESS_SETTLE_MS, killVictim, async (app, run) => {
    await waitUntil(() => app.openUploads === 0, 3000);
    reportUsers(
      results,
      scenario,
      run,
      settings,
      {
        // A process killed with -9 faces the users (server) or the local app (client) only
        // through the kernel: those are the kernel's FINs, not the code's.
        userFinAsserted: !(signal === 'SIGKILL' && victim === 'server'),
        appFinAsserted: !(signal === 'SIGKILL' && victim === 'client'),
        settleMs: PROCESS_SETTLE_MS,
      },
      app,
    );
    if (signal === 'SIGTERM')
      results.atMost(scenario, `${victim === 'server' ? 'commonserver' : 'groupclient'} exit after SIGTERM`, exitMs / 1000, EXIT_BOUND_MS / 1000, 's');
  });
}

/**
 * Scenario 3: the path between groupclient and commonserver goes silent mid-transfer (no FIN,
 * no reset). Only the heartbeat can tell; users must be reset within its timeout + 2 s.
 */
export async function blackhole(results: Results, scenario: string, settings: TransferSettings): Promise<void> {
  const heartbeat = { heartbeatInterval: '500ms', heartbeatTimeout: '2s' };
  const boundMs = 2000 + 2000;
  const settleMs = boundMs + 3000;
  await transferFault(
    { ...heartbeat, faultRelay: true },
    settings,
    settleMs,
    (tunnel) => tunnel.relay!.blackhole(),
    async (app, run) => {
      await waitUntil(() => app.openConns === 0, 3000);
      const after = run.users.filter((user) => user.atMs >= run.faultAtMs && user.outcome !== 'complete');
      results.atMost(
        scenario,
        'slowest user end after the blackhole',
        Math.max(0, ...after.map((user) => user.atMs - run.faultAtMs)) / 1000,
        boundMs / 1000,
        's',
        `heartbeat ${heartbeat.heartbeatInterval} / ${heartbeat.heartbeatTimeout}; bound = timeout + 2 s`,
      );
      reportUsers(results, scenario, run, settings, { userFinAsserted: true, appFinAsserted: true, settleMs }, app);
      results.figure(
        scenario,
        'local app: last conn closed after the blackhole',
        app.openConns === 0 ? (app.lastCloseMs - run.faultAtMs) / 1000 : Number.NaN,
        's',
        'NaN: conns still open at the local app 3 s after the users ended',
      );
    },
  );
}

/** Bulk users through a fresh tunnel, `fault` injected a quarter of the way, then `report`. */
async function transferFault(
  options: Omit<TunnelOptions, 'apps'>,
  settings: TransferSettings,
  settleMs: number,
  fault: (tunnel: Tunnel) => Promise<void> | void,
  report: (app: TransferApp, run: FaultRun) => Promise<void>,
): Promise<void> {
  const app = await startTransferApp();
  try {
    const tunnel = await openTunnel({ ...options, apps: { transfer: app.port } });
    try {
      const run = await runUsersWithFault({
        port: tunnel.ports.get('transfer')!,
        ...settings,
        faultAfter: 0.25,
        uploaded: () => app.uploaded,
        uploadsOpen: () => app.openUploads,
        settleMs,
        fault: () => fault(tunnel),
      });
      await report(app, run);
    } finally {
      await tunnel.close();
    }
  } finally {
    await app.close();
  }
}

function reportUsers(
  results: Results,
  scenario: string,
  run: FaultRun,
  settings: TransferSettings,
  options: { userFinAsserted: boolean; appFinAsserted: boolean; settleMs: number },
  app: TransferApp,
): void {
  const counts = countOutcomes(run.users);
  const uploads = countOutcomes(run.users.filter((user) => user.kind === 'U'));
  const split = (outcome: Outcome): void => results.detail(`uploads ${uploads[outcome]}, downloads ${counts[outcome] - uploads[outcome]}`);
  const mb = settings.bytes / 2 ** 20;
  results.atLeast(
    scenario,
    `users mid-transfer at the fault (of ${settings.users} × ${mb} MB)`,
    run.activeAtFault,
    1,
    '',
    'below 1: the transfers ended before the fault, which then proved nothing',
  );
  if (options.userFinAsserted) results.atMost(scenario, 'users: clean EOF, bytes missing', counts['short-eof'], 0, '');
  else results.figure(scenario, 'users: clean EOF, bytes missing', counts['short-eof'], '', KERNEL_FIN);
  split('short-eof');
  results.atMost(scenario, 'users: corrupt', counts.corrupt, 0, '');
  results.figure(scenario, 'users: reset', counts.reset, '');
  split('reset');
  results.figure(scenario, 'users: complete', counts.complete, '');
  if (counts.error > 0) {
    results.figure(scenario, 'users: other errors', counts.error, '');
    split('error');
  }
  results.atMost(scenario, `users still open ${options.settleMs / 1000} s after the fault`, counts.open, 0, '');
  const sinkEnds = (end: SinkEnd): number => app.sinkEnds.filter((record) => record.end === end).length;
  if (options.appFinAsserted) results.atMost(scenario, 'local app: uploads ended by a clean FIN, bytes missing', sinkEnds('fin-short'), 0, '');
  else results.figure(scenario, 'local app: uploads ended by a clean FIN, bytes missing', sinkEnds('fin-short'), '', KERNEL_FIN);
  results.atLeast(
    scenario,
    'local app: uploads under way at the fault',
    run.uploadsAtFault,
    1,
    '',
    'below 1: the transfers ended before the fault, which then proved nothing',
  );
  results.figure(scenario, 'local app: uploads reset', sinkEnds('reset'), '');
  results.figure(scenario, 'local app: uploads ended by another error', sinkEnds('error'), '');
  results.atMost(scenario, 'local app: uploads still open', app.openUploads, 0, '');
}
