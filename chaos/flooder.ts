/**
 * The ping flooder of scenario 4, a process of its own:
 * `node flooder.js COMMON_PORT FINGERPRINT GROUP MS`, the group's secret in CHAOS_FLOOD_SECRET.
 * Logs in over TLS with the pinned fingerprint as the real client would, prints `flooding`,
 * writes Pings for MS milliseconds without ever reading, then prints its figures as JSON.
 */
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { dialCommon } from '../src/client/index.js';
import { ControlChannel } from '../src/net/index.js';
import { encodeFrame, loginProof, PROTOCOL_VERSION } from '../src/protocol/index.js';
import { withDeadline } from './deadline.js';

export const FLOOD_SECRET_ENV = 'CHAOS_FLOOD_SECRET';
const CLIENT_ID = 'chaos-flooder';

async function floodLogin(port: number, fingerprint: string, group: string, secret: string): Promise<Socket> {
  const socket = await dialCommon({ host: '127.0.0.1', port }, { kind: 'tls', fingerprint }, 5000);
  socket.on('error', () => {});
  const channel = new ControlChannel(socket);
  const challenge = channel.next('Challenge');
  channel.send({ type: 'Hello', version: PROTOCOL_VERSION, group, clientId: CLIENT_ID });
  const { nonce } = await withDeadline(challenge, 5000, 'Challenge');
  const answer = channel.next('LoginResp');
  channel.send({ type: 'Login', proof: loginProof(secret, nonce, group, CLIENT_ID), apps: [] });
  const resp = await withDeadline(answer, 5000, 'LoginResp');
  if (resp.sessionId === undefined) throw new Error(`login refused: ${resp.error?.code}`);
  // Never read again: every Pong (and every request for work conns) piles up on the server.
  socket.pause();
  return socket;
}

/** Writes Pings until `ms` passed or the server closed the conn, waiting only when the kernel is full. */
async function floodPings(socket: Socket, ms: number): Promise<{ frames: number; closedAfterMs: number | null }> {
  const perBatch = 512;
  const batch = Buffer.concat(Array.from({ length: perBatch }, (_, seq) => encodeFrame({ type: 'Ping', seq })));
  const started = Date.now();
  const end = started + ms;
  let frames = 0;
  let closedAfterMs: number | null = null;
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      closedAfterMs = Date.now() - started;
      resolve();
    }),
  );
  while (Date.now() < end && closedAfterMs === null) {
    frames += perBatch;
    if (socket.write(batch)) {
      // Let the close and drain events in now and then.
      if (frames % (perBatch * 16) === 0) await sleep(0);
      continue;
    }
    const waiting = new AbortController();
    const quiet = (): void => {};
    await Promise.race([
      once(socket, 'drain', { signal: waiting.signal }).catch(quiet),
      closed,
      sleep(end - Date.now(), undefined, { signal: waiting.signal }).catch(quiet),
    ]);
    waiting.abort();
  }
  socket.destroy();
  return { frames, closedAfterMs };
}

async function main(): Promise<void> {
  const [port, fingerprint, group, ms] = process.argv.slice(2);
  const secret = process.env[FLOOD_SECRET_ENV];
  if (port === undefined || fingerprint === undefined || group === undefined || ms === undefined || secret === undefined) {
    throw new Error(`usage: flooder.js COMMON_PORT FINGERPRINT GROUP MS, with ${FLOOD_SECRET_ENV} set`);
  }
  const socket = await floodLogin(Number(port), fingerprint, group, secret);
  process.stdout.write('flooding\n');
  process.stdout.write(`${JSON.stringify(await floodPings(socket, Number(ms)))}\n`);
}

// Imported (for the constant above), it does nothing; run, it floods.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(`flooder: ${(error as Error).message}`);
      process.exit(1);
    },
  );
}
