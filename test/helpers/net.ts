import { createHash } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { firstValueFrom, filter, timeout, type Observable } from 'rxjs';
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
 * Resolves once the peer hangs up: its FIN ('end') or a close. Data still unread is
 * discarded, since the FIN is only seen once what precedes it has been consumed.
 */
export function hungUp(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.readableEnded || socket.closed) return resolve();
    socket.once('end', resolve);
    socket.once('close', resolve);
    socket.resume();
  });
}
