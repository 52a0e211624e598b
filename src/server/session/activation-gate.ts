import type { LoginRejectCode } from '../../protocol/index.js';

export type Claim = { granted: true } | { granted: false; code: LoginRejectCode; reason: string };

/**
 * Who else must agree before this server activates a group. A single server needs nobody;
 * a cluster node must first hold the group in etcd (inUseGroup there), so that no group is
 * ever active on two nodes.
 */
export interface ActivationGate {
  /** Asked after the login proof is checked and before any port opens. */
  claim(group: string, info: { clientId: string; clientAddress: string }): Promise<Claim>;
  /** The group left this server's inUseGroup: another node may take it. */
  release(group: string): void;
}
