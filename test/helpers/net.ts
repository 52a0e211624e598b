import { createHash } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { firstValueFrom, filter, timeout, type Observable } from 'rxjs';

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

/** Resolves when the socket closes, with how long that took from now. */
export function closedWithin(socket: Socket): Promise<number> {
  const started = Date.now();
  return new Promise((resolve) => {
    if (socket.destroyed) resolve(0);
    socket.once('close', () => resolve(Date.now() - started));
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

/** The first event matching `predicate`, or a timeout error naming `what`. */
export function waitForEvent<E>(events$: Observable<E>, predicate: (event: E) => boolean, what: string, timeoutMs = 5000): Promise<E> {
  return firstValueFrom(
    events$.pipe(
      filter(predicate),
      timeout({ first: timeoutMs, with: () => { throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`); } }),
    ),
  );
}

/**
 * Polls `predicate` (every 20ms, bounded by `timeoutMs`) for state that no event announces,
 * such as a server-side counter settling after sockets close.
 */
export async function waitUntil(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
