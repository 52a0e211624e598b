import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ControlChannel, FrameReader } from '../../src/net/index.js';
import { encodeFrame, randomId, type Message, type NewWorkConn } from '../../src/protocol/index.js';
import { createCommonListener, loadServerTransport } from '../../src/server/index.js';

/** What the fake server does with a client once it has accepted its login. */
export type HostileBehaviour = (channel: ControlChannel) => void;

export interface HostileServerOptions {
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  /** Answers the login with `mux: true` (the client then expects ReqMuxConn). */
  mux?: boolean;
  /** Takes a work conn (raw, after its NewWorkConn) instead of holding it unused: a mux conn, say. */
  onWorkConn?: (socket: Socket, join: NewWorkConn) => void;
}

export interface HostileServer {
  port: number;
  /** `sha256:...` of its certificate, for the client to pin. */
  fingerprint: string;
  /** Control conns that logged in so far. */
  logins: number;
  /** Work conns that presented a NewWorkConn so far (kept open, never used). */
  workConns: number;
  /** Refuses new conns from now on (the ones open stay): a work conn the client dials fails. */
  stopListening(): void;
  close(): Promise<void>;
}

/**
 * A commonserver played by the test over TLS: it accepts any Login (it does not check the
 * proof: the client under test is the subject, not the server) and then behaves as told.
 */
export async function startHostileServer(
  behaviour: HostileBehaviour,
  { heartbeatIntervalMs = 500, heartbeatTimeoutMs = 2000, mux = false, onWorkConn }: HostileServerOptions = {},
): Promise<HostileServer> {
  const dir = mkdtempSync(join(tmpdir(), 'ntp-hostile-'));
  const { transport, fingerprint } = loadServerTransport({ plaintext: false, certFile: join(dir, 'server.crt'), keyFile: join(dir, 'server.key') });
  const sockets = new Set<Socket>();
  const onConn = (socket: Socket): void => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
    void serve(socket);
  };
  const serve = async (socket: Socket): Promise<void> => {
    // As the real server does: the first frame decides, and a work conn is handed on raw.
    const reader = new FrameReader(socket);
    const first = await new Promise<Message | undefined>((resolve) => {
      const subscription = reader.messages$.subscribe({
        next: (message) => {
          subscription.unsubscribe();
          reader.hold();
          resolve(message);
        },
        error: () => resolve(undefined),
        complete: () => resolve(undefined),
      });
    });
    if (first === undefined) return void socket.destroy();
    if (first.type === 'NewWorkConn') {
      server.workConns++;
      if (onWorkConn === undefined) return;
      reader.detach();
      return onWorkConn(socket, first);
    }
    const channel = new ControlChannel(socket, reader);
    try {
      if (first.type !== 'Hello') throw new Error(`expected Hello, got ${first.type}`);
      const login = channel.next('Login');
      channel.release();
      channel.send({ type: 'Challenge', nonce: randomId() });
      await login;
      server.logins++;
      channel.send({ type: 'LoginResp', sessionId: randomId(), heartbeatIntervalMs, heartbeatTimeoutMs, apps: [], ...(mux ? { mux: true } : {}) });
      behaviour(channel);
    } catch {
      socket.destroy();
    }
  };
  const listener = createCommonListener(transport, 5000, onConn, () => {});
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const server: HostileServer = {
    port: (listener.address() as AddressInfo).port,
    fingerprint: fingerprint!,
    logins: 0,
    workConns: 0,
    stopListening: () => void listener.close(),
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        listener.close(() => resolve());
      }),
  };
  return server;
}

/** `count` Ping frames (seq from `firstSeq` on) as one buffer: a flood's unit of writing. */
export function pingBatch(count: number, firstSeq = 0): Buffer {
  return Buffer.concat(Array.from({ length: count }, (_, i) => encodeFrame({ type: 'Ping', seq: firstSeq + i })));
}

/**
 * Floods `socket` with Pings and reads nothing (the caller stops its reader first), writing
 * as fast as the peer takes them: the flood stalls once the peer stops reading. Resolves when
 * the socket closes or `until` passes.
 */
export async function floodPings(socket: Socket, until = Number.POSITIVE_INFINITY): Promise<void> {
  const batch = pingBatch(2000);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const timeUp = Number.isFinite(until) ? sleep(Math.max(0, until - Date.now()), undefined, { ref: false }) : new Promise<void>(() => {});
  while (!socket.destroyed && Date.now() < until) {
    if (!socket.write(batch)) {
      const drained = await Promise.race([
        once(socket, 'drain').then(
          () => true,
          () => false,
        ),
        closed.then(() => false),
        timeUp.then(() => false),
      ]);
      if (!drained) return;
    }
  }
}
