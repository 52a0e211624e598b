import { createHash, randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { startApp, type TestApp } from '../test/helpers/apps.js';

/**
 * The local app behind the tunnel for bulk users. A user's first 13 bytes say what it wants:
 * `U` (upload: the app hashes what follows until the user's FIN and answers "<sha256> <bytes>\n")
 * or `D` (download: the app sends the user's stream and ends), then the user's number, the
 * stream's length and the time to spread it over (u32 each). Every user's stream differs, so
 * bytes that reach the wrong user fail its hash like corrupted ones.
 */
export const HEADER_BYTES = 13;
const CHUNK_BYTES = 64 * 1024;
const base = randomBytes(CHUNK_BYTES);

/** Chunk `index` of user `user`'s stream: the run's random block, stamped with both numbers. */
export function streamChunk(user: number, index: number, length = CHUNK_BYTES): Buffer {
  const chunk = Buffer.allocUnsafe(length);
  base.copy(chunk, 0, 0, length);
  if (length >= 8) {
    chunk.writeUInt32BE(user, 0);
    chunk.writeUInt32BE(index, 4);
  }
  return chunk;
}

/**
 * Writes user `user`'s stream of `bytes` to `socket` with backpressure, spread over at least
 * `spreadMs`, then calls `done`. Spread below the tunnel's capacity, the stream leaves little
 * in the sockets' buffers, so a fault lands mid-stream at both ends rather than after the
 * last bytes were already buffered past it.
 */
export function sendStream(socket: Socket, user: number, bytes: number, spreadMs: number, done: () => void): void {
  const started = Date.now();
  let index = 0;
  const pump = (): void => {
    while (index * CHUNK_BYTES < bytes && !socket.destroyed) {
      const waitMs = started + ((index * CHUNK_BYTES) / bytes) * spreadMs - Date.now();
      if (waitMs > 0) return void setTimeout(pump, waitMs);
      const length = Math.min(CHUNK_BYTES, bytes - index * CHUNK_BYTES);
      if (!socket.write(streamChunk(user, index++, length))) return void socket.once('drain', pump);
    }
    if (!socket.destroyed) done();
  };
  pump();
}

const digests = new Map<string, string>();

/** The sha256 of user `user`'s stream of `bytes`, computed once per run. */
export function streamDigest(user: number, bytes: number): string {
  const key = `${user}/${bytes}`;
  let digest = digests.get(key);
  if (digest === undefined) {
    const hash = createHash('sha256');
    for (let index = 0; index * CHUNK_BYTES < bytes; index++) hash.update(streamChunk(user, index, Math.min(CHUNK_BYTES, bytes - index * CHUNK_BYTES)));
    digest = hash.digest('hex');
    digests.set(key, digest);
  }
  return digest;
}

export function header(kind: 'U' | 'D', user: number, bytes: number, spreadMs: number): Buffer {
  const head = Buffer.alloc(HEADER_BYTES);
  head.write(kind, 0, 'latin1');
  head.writeUInt32BE(user, 1);
  head.writeUInt32BE(bytes, 5);
  head.writeUInt32BE(spreadMs, 9);
  return head;
}

/** How an upload's conn ended at the local app: the app side of "a reset, not a clean FIN". */
export type SinkEnd = 'complete' | 'fin-short' | 'reset' | 'error';

export interface SinkRecord {
  end: SinkEnd;
  atMs: number;
}

export interface TransferApp extends TestApp {
  /** One record per upload conn that ended, in order. */
  readonly sinkEnds: SinkRecord[];
  /** Upload bytes received so far, over all conns. */
  readonly uploaded: number;
  /** Upload conns accepted that have not ended yet. */
  readonly openUploads: number;
  /** Every conn (upload or download) still open at the app. */
  readonly openConns: number;
  /** When the last conn closed at the app (Date.now()). */
  readonly lastCloseMs: number;
}

export async function startTransferApp(): Promise<TransferApp> {
  const sinkEnds: SinkRecord[] = [];
  let openUploads = 0;
  let uploaded = 0;
  let openConns = 0;
  let lastCloseMs = 0;
  const app = await startApp((socket) => {
    openConns++;
    socket.once('close', () => {
      openConns--;
      lastCloseMs = Date.now();
    });
    let head = Buffer.alloc(0);
    const onHead = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      if (head.length < HEADER_BYTES) return;
      socket.off('data', onHead);
      const kind = head.toString('latin1', 0, 1);
      const user = head.readUInt32BE(1);
      const bytes = head.readUInt32BE(5);
      const spreadMs = head.readUInt32BE(9);
      const rest = head.subarray(HEADER_BYTES);
      if (kind === 'U') sink(socket, bytes, rest);
      else if (kind === 'D') sendStream(socket, user, bytes, spreadMs, () => socket.end());
      else socket.destroy();
    };
    socket.on('data', onHead);
  });

  function sink(socket: Socket, expected: number, first: Buffer): void {
    openUploads++;
    const hash = createHash('sha256').update(first);
    let received = first.length;
    let ended = false;
    const record = (end: SinkEnd): void => {
      if (ended) return;
      ended = true;
      openUploads--;
      sinkEnds.push({ end, atMs: Date.now() });
    };
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      received += chunk.length;
      uploaded += chunk.length;
    });
    socket.once('end', () => {
      record(received === expected ? 'complete' : 'fin-short');
      socket.end(`${hash.digest('hex')} ${received}\n`);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => record(error.code === 'ECONNRESET' ? 'reset' : 'error'));
    socket.once('close', () => record('error'));
  }

  // Getters, not copies: the figures are read after the fact.
  return {
    get port() {
      return app.port;
    },
    get accepted() {
      return app.accepted;
    },
    close: () => app.close(),
    sinkEnds,
    get uploaded() {
      return uploaded;
    },
    get openUploads() {
      return openUploads;
    },
    get openConns() {
      return openConns;
    },
    get lastCloseMs() {
      return lastCloseMs;
    },
  };
}
