import type { Socket } from 'node:net';
import { ControlChannel } from '../../src/net/index.js';
import { encodeFrame, joinProof, loginProof, PROTOCOL_VERSION, type AppDeclaration, type LoginResp } from '../../src/protocol/index.js';
import { dialServer, type ServerLink } from './link.js';

/**
 * A groupclient played by the test, frame by frame, over the server's link (TLS pinned to its
 * fingerprint, or plain TCP), so that a test can do what the real
 * client never would (answer late, replay a pairing id, send bytes with the first frame).
 */
export interface RawSession {
  channel: ControlChannel;
  sessionId: string;
  resp: LoginResp;
}

/** Hello → Challenge → Login → LoginResp, whatever the answer, over the server's link. */
export async function rawHandshake(
  server: ServerLink,
  group: string,
  secret: string,
  { clientId = 'raw-client', apps = [] as AppDeclaration[], mux = false }: { clientId?: string; apps?: AppDeclaration[]; mux?: boolean } = {},
): Promise<{ channel: ControlChannel; resp: LoginResp }> {
  const socket = await dialServer(server);
  socket.on('error', () => {});
  const channel = new ControlChannel(socket);
  const challenge = channel.next('Challenge');
  channel.send({ type: 'Hello', version: PROTOCOL_VERSION, group, clientId });
  const { nonce } = await challenge;
  const reply = channel.next('LoginResp');
  channel.send({ type: 'Login', proof: loginProof(secret, nonce, group, clientId), apps, ...(mux ? { mux: true } : {}) });
  return { channel, resp: await reply };
}

/** A login that must succeed. */
export async function rawLogin(...args: Parameters<typeof rawHandshake>): Promise<RawSession> {
  const { channel, resp } = await rawHandshake(...args);
  if (resp.sessionId === undefined) {
    channel.destroy();
    throw new Error(`login refused: ${resp.error?.code} ${resp.error?.reason}`);
  }
  return { channel, sessionId: resp.sessionId, resp };
}

/**
 * Opens a work conn for `pairingId`; `firstBytes` go in the same write as NewWorkConn, as if
 * the local app had spoken at once.
 */
export async function rawWorkConn(
  server: ServerLink,
  session: { sessionId: string },
  pairingId: string,
  secret: string,
  firstBytes: Buffer = Buffer.alloc(0),
): Promise<Socket> {
  const socket = await dialServer(server);
  socket.on('error', () => {});
  const frame = encodeFrame({ type: 'NewWorkConn', sessionId: session.sessionId, pairingId, proof: joinProof(secret, session.sessionId, pairingId) });
  socket.write(Buffer.concat([frame, firstBytes]));
  return socket;
}
