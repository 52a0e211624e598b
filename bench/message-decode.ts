/**
 * Decode + validate cost per control frame, by hand: `node dist/bench/message-decode.js`.
 * Not part of `npm run bench` or the tests: it guards the hot path of every pooled user
 * (StartWorkConn, WorkConnFailed, Ping) when the message schemas change.
 */
import { encodeFrame, FrameDecoder, type Message } from '../src/protocol/index.js';

const PAIRING = 'a3f1c2d4e5f60718293a4b5c6d7e8f90a3f1c2d4e5f60718';
const HOT: Message[] = [
  { type: 'StartWorkConn', app: 'web', pairingId: PAIRING },
  { type: 'WorkConnFailed', pairingId: PAIRING, reason: 'local app unreachable: 127.0.0.1:8080: ECONNREFUSED' },
  { type: 'Ping', seq: 42 },
  {
    type: 'LoginResp',
    sessionId: PAIRING,
    heartbeatIntervalMs: 10_000,
    heartbeatTimeoutMs: 30_000,
    apps: [{ name: 'web', remotePort: 6080, state: 'listening' }],
    warnings: [],
  },
];
const ITERATIONS = Number(process.argv[2] ?? 500_000);
const ROUNDS = 7;

function nsPerFrame(frame: Buffer): number {
  const decoder = new FrameDecoder();
  const time = (n: number): number => {
    // CPU time, not wall time, and the fastest of a few rounds: on a shared machine the
    // other processes only ever add to a round, never take from it.
    const start = process.cpuUsage();
    for (let i = 0; i < n; i++) {
      decoder.push(frame);
      if (decoder.next() === undefined) throw new Error('frame not decoded');
    }
    const used = process.cpuUsage(start);
    return ((used.user + used.system) * 1000) / n;
  };
  time(ITERATIONS / 10);
  return Math.min(...Array.from({ length: ROUNDS }, () => time(ITERATIONS)));
}

for (const message of HOT) {
  console.log(`${message.type.padEnd(14)} ${nsPerFrame(encodeFrame(message)).toFixed(0).padStart(6)} ns per decode + validate`);
}
