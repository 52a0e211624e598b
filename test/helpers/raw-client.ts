import { ControlChannel } from '../../src/net/index.js';
import { loginProof, PROTOCOL_VERSION, type LoginResp } from '../../src/protocol/index.js';
import { connectTo } from './net.js';

/**
 * Logs a group in by hand and then does nothing at all: no pings, no answers. Stands for a
 * client whose path died silently (the server can only notice by heartbeat timeout).
 */
export async function silentLogin(port: number, group: string, secret: string, clientId: string): Promise<{ channel: ControlChannel; resp: LoginResp }> {
  const channel = new ControlChannel(await connectTo(port));
  channel.socket.on('error', () => {});
  const challenge = channel.next('Challenge');
  channel.send({ type: 'Hello', version: PROTOCOL_VERSION, group, clientId });
  const { nonce } = await challenge;
  const reply = channel.next('LoginResp');
  channel.send({ type: 'Login', proof: loginProof(secret, nonce, group, clientId), apps: [] });
  return { channel, resp: await reply };
}
