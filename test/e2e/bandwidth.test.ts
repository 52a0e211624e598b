import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { unusedPort } from '../helpers/apps.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { ProcessSet, startCommonServerProcess, startGroupClientProcess, waitForGroupActive } from '../helpers/processes.js';
import { IPERF3, runIperf3Client, skipWithout, startIperf3Server, type ChildProgram } from '../helpers/programs.js';

const skip = skipWithout(IPERF3, 'iperf3');
/** `bandwidth: { in: 4MB, out: 4MB }`: KB, MB and GB are powers of 1024. */
const LIMIT = 4 * 1024 * 1024;
/** Measured for 2 s after 1 s left out (`-O 1`): the bucket's burst and TCP's slow start are not the rate. */
const RUN = ['-t', '2', '-O', '1'];

function assertNearLimit(measured: number, what: string): void {
  const ratio = measured / LIMIT;
  assert.ok(ratio > 0.9 && ratio < 1.1, `${what}: ${(measured / 1024 / 1024).toFixed(2)} MB/s is not within 10 % of the 4 MB/s limit`);
}

/**
 * iperf3 behind the real CLIs over TLS: a limited app and an unlimited one beside it in the same
 * group, measured at the same time. The receiving end's figure counts: it is what got through.
 */
describe('bandwidth limits, measured by iperf3 through the tunnel', { skip, timeout: 90_000 }, () => {
  const processes = new ProcessSet();
  const iperfServers: ChildProgram[] = [];
  let ports = new Map<string, number>();

  before(async () => {
    const limitedPort = await unusedPort();
    const freePort = await unusedPort();
    iperfServers.push(await startIperf3Server(limitedPort), await startIperf3Server(freePort));
    const config = makeConfigDir([
      {
        name: 'shaped',
        secret: randomSecret(),
        apps: [
          { name: 'limited', localPort: limitedPort, extra: { bandwidth: { in: '4MB', out: '4MB' } } },
          { name: 'unlimited', localPort: freePort },
        ],
      },
    ]);
    const server = await startCommonServerProcess(config.serverFile);
    processes.add(server.process);
    const client = processes.add(startGroupClientProcess({ group: 'shaped', groupsDir: config.groupsDir, server }));
    ports = await waitForGroupActive(client, 'shaped');
  });

  after(async () => {
    await processes.stopAll();
    await Promise.all(iperfServers.map((server) => server.stop()));
  });

  for (const [direction, args] of [
    ['in (user to app)', []],
    ['out (app to user, -R)', ['-R']],
  ] as const) {
    test(`${direction}: the limited app lands within 10 % of its limit, the unlimited one beside it stays far above`, async () => {
      const [limited, unlimited] = await Promise.all([
        runIperf3Client(ports.get('limited')!, [...RUN, ...args]),
        runIperf3Client(ports.get('unlimited')!, [...RUN, ...args]),
      ]);
      assertNearLimit(limited.receivedBytesPerSecond, 'limited app');
      assert.ok(
        unlimited.receivedBytesPerSecond > 3 * LIMIT,
        `unlimited app: ${(unlimited.receivedBytesPerSecond / 1024 / 1024).toFixed(1)} MB/s, not above 3x the other app's limit`,
      );
    });
  }

  test('two users of the limited app share its limit: together within 10 %, neither starved', async () => {
    const result = await runIperf3Client(ports.get('limited')!, [...RUN, '-P', '2']);
    assertNearLimit(result.receivedBytesPerSecond, 'two users together');
    assert.equal(result.streams.length, 2);
    for (const stream of result.streams) {
      assert.ok(
        stream > 0.35 * result.receivedBytesPerSecond,
        `one user got ${(stream / 1024 / 1024).toFixed(2)} of ${(result.receivedBytesPerSecond / 1024 / 1024).toFixed(2)} MB/s`,
      );
    }
  });
});
