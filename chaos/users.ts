import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitUntil } from './deadline.js';
import { header, sendStream, streamDigest } from './transfer-app.js';

/**
 * How a bulk user's transfer ended, as its own program would see it:
 * `short-eof` is the outcome that must never happen: a clean FIN although bytes are missing,
 * which an app without its own length framing would take for a complete answer.
 */
export type Outcome = 'complete' | 'reset' | 'short-eof' | 'corrupt' | 'error' | 'open';

export interface UserResult {
  kind: 'U' | 'D';
  outcome: Outcome;
  /** When the outcome was seen (Date.now()). */
  atMs: number;
}

export interface FaultRun {
  users: UserResult[];
  /** When the fault was injected (Date.now()), NaN if the transfers ended before it. */
  faultAtMs: number;
  /** Users whose transfer had not ended when the fault was injected. */
  activeAtFault: number;
  /** Uploads the local app was receiving when the fault was injected. */
  uploadsAtFault: number;
}

export interface FaultRunOptions {
  port: number;
  users: number;
  bytes: number;
  /** Each stream is spread over at least this long. */
  spreadMs: number;
  /** The fault, injected once this share of each direction's bytes went through (0..1). */
  faultAfter: number;
  /** Upload bytes the local app received so far. */
  uploaded(): number;
  /** Uploads the local app is receiving now. */
  uploadsOpen(): number;
  fault(): Promise<void> | void;
  /** How long users may take to end after the fault; those still open are counted `open`. */
  settleMs: number;
  /** Bound on the transfers before the fault. */
  deadlineMs: number;
}

/**
 * `users` users, half uploading and half downloading `bytes` each through `port`, all at once;
 * a fault is injected mid-transfer, then every user's outcome is collected, bounded in time.
 */
export async function runUsersWithFault(options: FaultRunOptions): Promise<FaultRun> {
  let downloaded = 0;
  const onDownloaded = (n: number): void => void (downloaded += n);
  const running = Array.from({ length: options.users }, (_, user) => startUser(options, user, user % 2 === 0 ? 'U' : 'D', onDownloaded));
  const allDone = Promise.all(running.map((user) => user.result));
  // Both directions under way: a fault while only downloads flow would prove nothing on uploads.
  const half = (options.bytes * options.users) / 2;
  const reached = waitUntil(() => Math.min(downloaded, options.uploaded()) >= options.faultAfter * half, options.deadlineMs, 5);
  const first = await Promise.race([reached, allDone.then(() => 'done' as const)]);
  let faultAtMs = Number.NaN;
  let activeAtFault = 0;
  let uploadsAtFault = 0;
  if (first !== 'done') {
    uploadsAtFault = options.uploadsOpen();
    activeAtFault = running.filter((user) => user.outcome === undefined).length;
    faultAtMs = Date.now();
    await options.fault();
  }
  await Promise.race([allDone, sleep(options.settleMs)]);
  for (const user of running) user.abandon();
  return { users: await allDone, faultAtMs, activeAtFault, uploadsAtFault };
}

interface RunningUser {
  result: Promise<UserResult>;
  outcome: Outcome | undefined;
  /** Counts the user `open` if it has not ended, and closes its socket. */
  abandon(): void;
}

function startUser({ port, bytes, spreadMs }: FaultRunOptions, user: number, kind: 'U' | 'D', onDownloaded: (n: number) => void): RunningUser {
  const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  let settle: (result: UserResult) => void = () => {};
  const running: RunningUser = {
    result: new Promise((resolve) => (settle = resolve)),
    outcome: undefined,
    abandon: () => finish('open'),
  };
  const finish = (outcome: Outcome): void => {
    if (running.outcome !== undefined) return;
    running.outcome = outcome;
    socket.destroy();
    settle({ kind, outcome, atMs: Date.now() });
  };
  socket.on('error', (error: NodeJS.ErrnoException) => finish(error.code === 'ECONNRESET' || error.code === 'EPIPE' ? 'reset' : 'error'));
  // After an 'end' the outcome is already decided; a close without either is a local destroy.
  socket.once('close', () => finish('error'));
  const received: Buffer[] = [];
  let receivedBytes = 0;
  const hash = createHash('sha256');
  socket.on('data', (chunk: Buffer) => {
    receivedBytes += chunk.length;
    if (kind === 'U') received.push(chunk);
    else {
      hash.update(chunk);
      onDownloaded(chunk.length);
    }
  });
  socket.once('end', () => {
    if (kind === 'U') {
      const answer = Buffer.concat(received).toString('latin1');
      if (!answer.endsWith('\n')) return finish('short-eof');
      return finish(answer === `${streamDigest(user, bytes)} ${bytes}\n` ? 'complete' : 'corrupt');
    }
    if (receivedBytes < bytes) return finish('short-eof');
    finish(receivedBytes === bytes && hash.digest('hex') === streamDigest(user, bytes) ? 'complete' : 'corrupt');
  });
  socket.once('connect', () => {
    if (kind === 'D') return void socket.end(header('D', user, bytes, spreadMs));
    socket.write(header('U', user, bytes, spreadMs));
    sendStream(socket, user, bytes, spreadMs, () => socket.end());
  });
  return running;
}

/** Outcome → how many users saw it. */
export function countOutcomes(users: UserResult[]): Record<Outcome, number> {
  const counts: Record<Outcome, number> = { complete: 0, reset: 0, 'short-eof': 0, corrupt: 0, error: 0, open: 0 };
  for (const user of users) counts[user.outcome]++;
  return counts;
}
