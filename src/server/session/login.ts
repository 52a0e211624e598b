import type { GroupSpec } from '../../config/index.js';
import type { ControlChannel } from '../../net/index.js';
import { loginProof, proofsMatch, PROTOCOL_VERSION, randomId, type Hello, type Login, type LoginRejectCode } from '../../protocol/index.js';

export interface LiveGroupInfo {
  clientId: string;
  clientAddress: string;
  since: number;
}

export interface LoginRegistry {
  readyGroup: ReadonlyMap<string, GroupSpec>;
  liveGroup(name: string): LiveGroupInfo | undefined;
  /** Called each time a proof is about to be checked against a secret (the limiter's counter). */
  onProofChecked?: () => void;
}

export type LoginOutcome = { accepted: true; spec: GroupSpec; login: Login; takeover: boolean } | { accepted: false; code: LoginRejectCode; reason: string };

/**
 * Challenge–response login on a common conn whose first frame was Hello. The secret never
 * crosses the wire: the client proves it with an HMAC over a nonce issued here, used once.
 */
export async function runLogin(channel: ControlChannel, hello: Hello, registry: LoginRegistry): Promise<LoginOutcome> {
  if (hello.version !== PROTOCOL_VERSION) {
    return reject(
      'VERSION_MISMATCH',
      `protocol version ${hello.version} is not supported (this server speaks ${PROTOCOL_VERSION}); update ${hello.version < PROTOCOL_VERSION ? 'the groupclient' : 'the commonserver'}`,
    );
  }
  if (!registry.readyGroup.has(hello.group)) return reject('UNKNOWN_GROUP', `group "${hello.group}" is not registered on this server`);

  const nonce = randomId(32);
  const login = channel.next('Login'); // subscribe before the peer may speak
  channel.send({ type: 'Challenge', nonce });
  const answer = await login;

  // The registry as it is now, not as it was at Hello: a group removed, or its secret
  // changed, while the client was answering must not log in with the old facts.
  const spec = registry.readyGroup.get(hello.group);
  if (spec === undefined) return reject('UNKNOWN_GROUP', `group "${hello.group}" was removed from this server's registry during the login`);
  registry.onProofChecked?.();
  const expected = loginProof(spec.secret.reveal(), nonce, hello.group, hello.clientId);
  if (!proofsMatch(expected, answer.proof)) {
    return reject('BAD_SECRET', `wrong secret for group "${hello.group}"`);
  }

  const live = registry.liveGroup(hello.group);
  if (live !== undefined && live.clientId !== hello.clientId) {
    return reject(
      'GROUP_IN_USE',
      `group "${hello.group}" is already active from ${live.clientAddress} since ${new Date(live.since).toISOString()} (another client); it becomes free when that client leaves or its heartbeat times out`,
    );
  }
  return { accepted: true, spec, login: answer, takeover: live !== undefined };
}

function reject(code: LoginRejectCode, reason: string): LoginOutcome {
  return { accepted: false, code, reason };
}
