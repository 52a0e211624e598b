import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { ControlChannel } from '../../src/net/index.js';
import type { ServerLink } from './link.js';
import { encodeFrame, loginProof, PROTOCOL_VERSION, type LoginResp, type Message } from '../../src/protocol/index.js';

/** A common port to reach: a bare port is plain TCP; a ServerLink with a fingerprint is TLS, as the server speaks it. */
export type RawTarget = number | ServerLink;

/**
 * A hand-driven peer on the common port, for tests that must send exactly what a real client
 * would not: replayed proofs, wrong orders, raw bytes. It speaks TLS when the target has a
 * certificate (the default mode), without checking it: a hostile peer does not care whom it talks to.
 */
export function connectFrom(target: RawTarget, localAddress = '127.0.0.1'): Promise<Socket> {
  const { port, fingerprint } = typeof target === 'number' ? { port: target, fingerprint: undefined } : target;
  return new Promise((resolve, reject) => {
    const tcp = connect({ host: '127.0.0.1', port, localAddress, allowHalfOpen: true });
    const socket = fingerprint === undefined ? tcp : tlsConnect({ socket: tcp, rejectUnauthorized: false });
    socket.once(fingerprint === undefined ? 'connect' : 'secureConnect', () => {
      socket.off('error', reject);
      socket.on('error', () => {}); // the server may reset a peer it refuses
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

export interface RawLogin {
  channel: ControlChannel;
  nonce: string;
  /** The Login message exactly as sent (to replay it). */
  login: Extract<Message, { type: 'Login' }>;
  resp: LoginResp;
}

/** Hello → Challenge → Login (proof from `secret`, or `proof` verbatim) → LoginResp. */
export async function rawLogin(
  port: RawTarget,
  {
    group,
    clientId = `raw-${group}`,
    secret,
    proof,
    localAddress,
  }: { group: string; clientId?: string; secret?: string; proof?: string; localAddress?: string },
): Promise<RawLogin> {
  const hello = await rawHello(port, { group, clientId, ...(localAddress === undefined ? {} : { localAddress }) });
  return hello.login(proof === undefined ? { secret: secret ?? 'not-the-secret-at-all' } : { proof });
}

export interface RawHello {
  channel: ControlChannel;
  nonce: string;
  /** Sends the Login (proof from `secret`, or `proof` verbatim) and reads the LoginResp. */
  login(answer: { secret: string } | { proof: string }): Promise<RawLogin>;
}

/** Hello → Challenge only: the Login is sent later, when the test says (to change things in between). */
export async function rawHello(
  port: RawTarget,
  { group, clientId = `raw-${group}`, localAddress }: { group: string; clientId?: string; localAddress?: string },
): Promise<RawHello> {
  const channel = new ControlChannel(await connectFrom(port, localAddress));
  const challenge = channel.next('Challenge');
  channel.send({ type: 'Hello', version: PROTOCOL_VERSION, group, clientId });
  const { nonce } = await challenge;
  return {
    channel,
    nonce,
    async login(answer) {
      const login = {
        type: 'Login' as const,
        proof: 'proof' in answer ? answer.proof : loginProof(answer.secret, nonce, group, clientId),
        apps: [],
      };
      const reply = channel.next('LoginResp');
      channel.send(login);
      const resp = await reply;
      return { channel, nonce, login, resp };
    },
  };
}

/** Resolves once the server ended or reset the connection (a half-open socket never 'close's by itself). */
export function endedByServer(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed || socket.readableEnded) return resolve();
    socket.once('end', () => resolve());
    socket.once('close', () => resolve());
    socket.resume();
  });
}

/** Writes one encoded frame on a raw socket. */
export function sendFrame(socket: Socket, message: Message): void {
  socket.write(encodeFrame(message));
}
