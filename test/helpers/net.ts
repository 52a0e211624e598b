import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, createServer, isIPv6, type AddressInfo, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { firstValueFrom, filter, skip, timeout, type Observable, type ReplaySubject } from 'rxjs';
import { FrameDecoder, type Message } from '../../src/protocol/index.js';

/** Connects to 127.0.0.1:port, allowing half-close. */
export function connectTo(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** Reads until the peer's FIN (or close); resolves with everything received. */
export function readAll(socket: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('end', () => resolve(Buffer.concat(chunks)));
    socket.once('close', () => resolve(Buffer.concat(chunks)));
    socket.once('error', reject);
  });
}

/** Reads until exactly `count` bytes arrived (or fails when the socket closes first). */
export function readBytes(socket: Socket, count: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      received += chunk.length;
      if (received >= count) {
        socket.off('data', onData);
        socket.off('close', onClose);
        const all = Buffer.concat(chunks);
        if (all.length > count) socket.unshift(all.subarray(count));
        resolve(all.subarray(0, count));
      }
    };
    const onClose = (): void => reject(new Error(`socket closed after ${received} of ${count} bytes`));
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}

/**
 * Resolves when the peer closes the connection (its FIN or a reset: with allowHalfOpen a FIN
 * alone never emits 'close'), with how long that took from now. Starts reading to see it.
 */
export function closedWithin(socket: Socket): Promise<number> {
  const started = Date.now();
  return new Promise((resolve) => {
    if (socket.destroyed || socket.readableEnded) resolve(0);
    const done = (): void => resolve(Date.now() - started);
    socket.once('end', done);
    socket.once('close', done);
    socket.resume();
  });
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Sends `payload` through `port`, half-closes, and returns what came back (for echo apps). */
export async function echoRoundTrip(port: number, payload: Buffer): Promise<Buffer> {
  const socket = await connectTo(port);
  const received = readAll(socket);
  socket.end(payload);
  const data = await received;
  socket.destroy();
  return data;
}

/** What `events` (a replaying subject) emits from now on, without what it replays. */
export function fromNow<E>(events: ReplaySubject<E>): Observable<E> {
  let seen = 0;
  events.subscribe(() => seen++).unsubscribe();
  return events.pipe(skip(seen));
}

/** The first event matching `predicate`, or a timeout error naming `what`. */
export function waitForEvent<E>(events$: Observable<E>, predicate: (event: E) => boolean, what: string, timeoutMs = 5000): Promise<E> {
  return firstValueFrom(
    events$.pipe(
      filter(predicate),
      timeout({
        first: timeoutMs,
        with: () => {
          throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
        },
      }),
    ),
  );
}

/** Resolves when nobody listens on 127.0.0.1:port (connection refused); rejects if someone does. */
export function expectRefused(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      reject(new Error(`port ${port} accepted a connection; expected it closed`));
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED') resolve();
      else reject(error);
    });
  });
}

/** Whether this process can bind 127.0.0.1:port right now (the port is free again). */
export function canListenOn(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * Both ends of one real loopback TCP connection, half-close allowed on both:
 * `[near, far]`, where `near` is the connecting side.
 */
export async function socketPair(): Promise<[Socket, Socket]> {
  const server = createServer({ allowHalfOpen: true });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const near = await connectTo((server.address() as AddressInfo).port);
  const far = await accepted;
  server.close();
  return [near, far];
}

/**
 * The next protocol frame from a raw socket (a test speaking the protocol by hand). Bytes
 * after the frame are put back, and the socket is left paused.
 */
export function readFrame(socket: Socket): Promise<Message> {
  const decoder = new FrameDecoder();
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      decoder.push(chunk);
      let message: Message | undefined;
      try {
        message = decoder.next();
      } catch (error) {
        finish();
        reject(error);
        return;
      }
      if (message === undefined) return;
      finish();
      socket.pause();
      const rest = decoder.takeRemainder();
      if (rest.length > 0) socket.unshift(rest);
      resolve(message);
    };
    const onClose = (): void => {
      finish();
      reject(new Error(`socket closed before a whole frame (${decoder.bufferedBytes} bytes received)`));
    };
    const finish = (): void => {
      socket.off('data', onData);
      socket.off('close', onClose);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.resume();
  });
}

/**
 * `totalBytes` of fresh random data as a stream, generated chunk by chunk (so a large
 * transfer never sits in memory); `sha256()` gives the digest once the stream has ended.
 */
export function randomStream(totalBytes: number, chunkBytes = 256 * 1024): { stream: Readable; sha256(): string } {
  const hash = createHash('sha256');
  let digest: string | undefined;
  function* chunks(): Generator<Buffer> {
    for (let sent = 0; sent < totalBytes; sent += chunkBytes) {
      const chunk = randomBytes(Math.min(chunkBytes, totalBytes - sent));
      hash.update(chunk);
      yield chunk;
    }
    digest = hash.digest('hex');
  }
  return {
    stream: Readable.from(chunks(), { objectMode: false }),
    sha256: () => {
      if (digest === undefined) throw new Error('randomStream: not fully read yet');
      return digest;
    },
  };
}

/** Hashes everything read from `socket` until its FIN; resolves with the count and digest. */
export function hashUntilEnd(socket: Socket): Promise<{ bytes: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      hash.update(chunk);
    });
    socket.once('end', () => resolve({ bytes, sha256: hash.digest('hex') }));
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`socket closed without a FIN after ${bytes} bytes`)));
  });
}

/** How a socket's incoming stream ended, and what it carried: a clean FIN or a reset. */
export interface StreamEnding {
  ending: 'fin' | 'reset' | 'error';
  bytes: number;
  data: Buffer;
  code?: string;
  /**
   * For a `fin`: the kernel's TCP state of the socket when Node read the end of stream
   * (`CLOSE_WAIT`, `TIME_WAIT` ... after a real FIN), or `undefined` when the kernel no longer
   * holds the connection: it was reset, and Linux read the reset as an end of stream because
   * unread bytes were queued when it arrived.
   */
  kernelState?: string;
}

/**
 * Reads `socket` until it ends and says how: `fin` (a clean end of stream), `reset`
 * (ECONNRESET, or EPIPE for a socket still writing: the far end failed) or `error` (anything
 * else). By default the socket is destroyed after a FIN, so
 * that the test leaves nothing open; with `keepOpen` it stays half-open (its own side may still
 * write, and must be ended by the test).
 */
export function streamEnding(socket: Socket, { keepOpen = false } = {}): Promise<StreamEnding> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    let kernelState: string | undefined;
    const readKernelState = kernelTcpState(socket);
    const done = (ending: StreamEnding['ending'], code?: string): void => {
      socket.removeListener('data', onData);
      const data = Buffer.concat(chunks);
      resolve({ ending, bytes, data, ...(code ? { code } : {}), ...(ending === 'fin' ? { kernelState } : {}) });
    };
    const onData = (chunk: Buffer): void => {
      bytes += chunk.length;
      chunks.push(chunk);
    };
    socket.on('data', onData);
    socket.once('end', () => {
      kernelState = readKernelState();
      done('fin');
      if (!keepOpen) socket.destroy();
    });
    socket.once('error', (error: NodeJS.ErrnoException) => done(error.code === 'ECONNRESET' || error.code === 'EPIPE' ? 'reset' : 'error', error.code));
    socket.once('close', () => done('error', 'CLOSED_WITHOUT_END'));
  });
}

/** A port in `from`..`to` that 127.0.0.1 can bind right now (for configs that restrict ports). */
export async function freePortIn(from: number, to: number): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const port = from + Math.floor(Math.random() * (to - from + 1));
    if (await canListenOn(port)) return port;
  }
  throw new Error(`no free port in ${from}-${to}`);
}

const TCP_STATES: Record<string, string> = {
  '01': 'ESTABLISHED',
  '02': 'SYN_SENT',
  '03': 'SYN_RECV',
  '04': 'FIN_WAIT1',
  '05': 'FIN_WAIT2',
  '06': 'TIME_WAIT',
  '07': 'CLOSE',
  '08': 'CLOSE_WAIT',
  '09': 'LAST_ACK',
  '0B': 'CLOSING',
};

/**
 * A reader of the TCP state the kernel holds for this IPv4 loopback socket's connection, from
 * /proc/net/tcp: `undefined` once the kernel dropped it (after a reset the connection leaves the
 * table at once; after a FIN it stays in CLOSE_WAIT, TIME_WAIT ...). What Node reports cannot
 * tell the two apart when a reset meets unread bytes. The addresses are taken now, while the
 * socket is open: Node no longer knows them once it is destroyed.
 */
export function kernelTcpState(socket: Socket): () => string | undefined {
  const { localAddress, localPort, remoteAddress, remotePort } = socket;
  if (!localAddress || !localPort || !remoteAddress || !remotePort || isIPv6(localAddress)) return () => undefined;
  const local = procAddress(localAddress, localPort);
  const remote = procAddress(remoteAddress, remotePort);
  return () => {
    for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
      const [, from, to, state] = line.trim().split(/\s+/);
      if (from === local && to === remote) return TCP_STATES[state ?? ''] ?? state;
    }
    return undefined;
  };
}

/**
 * The TCP sockets of process `pid` to `port` in CLOSE-WAIT, one `ss` line each: the far end's
 * FIN came in, and the process never closed its end (a socket it no longer reads, owned by no one).
 */
export function closeWaitOf(pid: number, port: number): string[] {
  const out = execFileSync('ss', ['-tanpH', 'state', 'close-wait', `( dport = :${port} )`], { encoding: 'utf8' });
  return out.split('\n').filter((line) => line.includes(`pid=${pid},`));
}

/** `127.0.0.1`, 8080 → `0100007F:1F90`: the address as /proc/net/tcp prints it (host byte order). */
function procAddress(address: string, port: number): string {
  const octets = address.split('.').map((octet) => Number(octet).toString(16).padStart(2, '0').toUpperCase());
  return `${octets.reverse().join('')}:${port.toString(16).padStart(4, '0').toUpperCase()}`;
}

/** `promise`, or a failure naming `what` if it has not settled within `ms` (a guard against a hang, not a timing assert). */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`nothing within ${ms}ms: ${what}`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Whether the far end reset the connection, as the kernel saw it: an ECONNRESET (or EPIPE), or
 * an end of stream that the kernel no longer holds (Linux reads a reset that meets unread bytes
 * as an end of stream; after a real FIN the connection stays in its table).
 */
export function endedByReset(saw: StreamEnding): boolean {
  return saw.ending === 'reset' || (saw.ending === 'fin' && saw.kernelState === undefined);
}
