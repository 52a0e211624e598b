import createDebug from 'debug';
import type { Etcd3 } from 'etcd3';
import type { ActivationGate, Claim } from '../session/activation-gate.js';
import type { ClusterActivation, ClusterNodeInfo, ClusterView } from './cluster-view.js';
import { filter, firstValueFrom, map, race, Subject, timer } from 'rxjs';
import type { ClusterKeys, ActivationRecord, NodeRecord, TakeoverRecord } from './keys.js';
import { parseRecord } from './keys.js';
import type { NodeLease } from './node-lease.js';
import { PrefixMirror, type MirrorChange } from './prefix-mirror.js';
import { formatDuration } from '../../config/index.js';

const debug = createDebug('ntp:server:cluster:claims');

export interface GroupClaimsOptions {
  etcd: Etcd3;
  keys: ClusterKeys;
  lease: NodeLease;
  self: () => NodeRecord;
  /** A group this node serves whose key now names another node, or is gone: stop serving it. */
  onClaimLost: (group: string) => void;
  /**
   * Another node authenticated a login of `request.clientId` for a group this node holds, and
   * asks for it: end the session if it is that client's (its release frees the key).
   */
  onTakeoverAsked: (group: string, request: TakeoverRecord) => void;
  /** How long a login waits for the node serving its client's old session to let the group go. */
  takeoverWaitMs: number;
}

/** The longest a login waits for another node to let its client's old session go. */
const TAKEOVER_WAIT_MAX_MS = 3000;

/**
 * How long a login may wait for a takeover: the whole login must end within the handshake
 * deadline, so the wait takes at most 60% of it (the rest is the proof, two etcd round trips
 * and the LoginResp).
 */
export function takeoverWaitFor(handshakeTimeoutMs: number): number {
  return Math.min(TAKEOVER_WAIT_MAX_MS, Math.floor(handshakeTimeoutMs * 0.6));
}

/**
 * One create-if-absent attempt: decided, or the key names another holder (read at `readAt`;
 * `unanswered` when that holder was asked for a takeover and did not let go in time).
 */
type Attempt = { claim: Claim } | { holder: ActivationRecord | undefined; readAt: bigint; unanswered?: true };

/** A group this node holds: its key, created at `createdAt` and attached to `leaseId`. */
interface HeldClaim {
  readonly leaseId: string;
  readonly createdAt: bigint;
}

/**
 * Whether a change of a held group's key ends the claim. The watch may deliver a change older
 * than the claim after the claim's transaction answered (a failover: the previous holder's key
 * deleted by its expired lease just before this node created its own; or this node's own
 * earlier release): such a change is about an earlier key, not ours. From the claim on, a
 * delete ends it, and so does a put under any other lease (a key of ours is never rewritten).
 */
function losesClaim(change: MirrorChange, claim: HeldClaim): boolean {
  if (BigInt(change.revision) < claim.createdAt) return false;
  return change.kind === 'delete' || change.lease !== claim.leaseId;
}

/**
 * inUseGroup in etcd: a node activates a group only after creating `PREFIX/active/NAME` in
 * a transaction that succeeds only if the key does not exist, attached to its lease. The
 * key goes when the node lets the group go, when its lease is revoked, or when it expires.
 * Every node mirrors the active and nodes prefixes, for the admin view.
 */
export class GroupClaims implements ActivationGate, ClusterView {
  private readonly active: PrefixMirror;
  private readonly nodeRecords: PrefixMirror;
  /** Takeover requests of other nodes, for the groups this node holds. */
  private readonly takeoverRequests: PrefixMirror;
  /** Every change of an active key, once the mirror applied it (a takeover waits on these). */
  private readonly activeChanges = new Subject<MirrorChange>();
  /** Claims and releases of one group run one after another. */
  private readonly queues = new Map<string, Promise<unknown>>();
  /** Groups this node holds: the lease their key is attached to, and the revision that created it. */
  private readonly held = new Map<string, HeldClaim>();
  private etcdTraffic = { claims: 0, requests: 0 };

  constructor(private readonly options: GroupClaimsOptions) {
    this.active = new PrefixMirror(options.etcd, options.keys.active, (change) => {
      this.onActiveChange(change);
      this.activeChanges.next(change);
    });
    this.takeoverRequests = new PrefixMirror(options.etcd, options.keys.takeovers, (change) => {
      if (change.kind !== 'put' || !this.held.has(change.name)) return;
      const request = parseRecord<TakeoverRecord>(change.value);
      if (request === undefined || request.node === this.node || typeof request.clientId !== 'string') return;
      debug('node %s asks for %s (client %s)', request.node, change.name, request.clientId);
      options.onTakeoverAsked(change.name, request);
    });
    this.nodeRecords = new PrefixMirror(options.etcd, options.keys.nodes, (change) => {
      if (change.kind === 'delete' && change.name === this.node) options.lease.recordDeleted(change.revision);
    });
  }

  private onActiveChange(change: MirrorChange): void {
    const claim = this.held.get(change.name);
    if (claim === undefined || !losesClaim(change, claim)) return;
    // Someone removed our key (an operator, or a lease that expired behind our back), or another lease holds it now.
    debug('claim on %s lost in etcd (revision %s)', change.name, change.revision);
    this.held.delete(change.name);
    this.options.onClaimLost(change.name);
  }

  get node(): string {
    return this.options.self().node;
  }

  get prefix(): string {
    return this.options.keys.prefix;
  }

  /** etcd requests made for activations since start (for the traffic-per-login figure). */
  get traffic(): { claims: number; requests: number } {
    return { ...this.etcdTraffic };
  }

  async start(): Promise<void> {
    await Promise.all([this.active.start(), this.nodeRecords.start(), this.takeoverRequests.start()]);
  }

  private serial<T>(group: string, task: () => Promise<T>): Promise<T> {
    const run = (this.queues.get(group) ?? Promise.resolve()).then(task, task);
    const tail = run.catch(() => undefined);
    this.queues.set(group, tail);
    void tail.then(() => this.queues.get(group) === tail && this.queues.delete(group));
    return run;
  }

  claim(group: string, info: { clientId: string; clientAddress: string }): Promise<Claim> {
    return this.serial(group, async () => {
      const state = this.options.lease.current;
      if (!state.held) return { granted: false, code: 'NODE_UNAVAILABLE', reason: `node ${this.node} holds no etcd lease (${state.reason}); try another node` };
      let attempt = await this.create(group, info.clientId, state.leaseId);
      if ('holder' in attempt && this.mayTakeOver(attempt.holder, info.clientId))
        attempt = await this.takeOver(group, info.clientId, state.leaseId, attempt.holder, attempt.readAt);
      if ('claim' in attempt) return attempt.claim;
      const { holder, unanswered } = attempt;
      const where = holder === undefined ? 'another node' : `node ${holder.node} (${holder.advertise}:${holder.commonPort}) since ${holder.since}`;
      const notLetGo = unanswered ? `; that node did not let its session of this client go within ${formatDuration(this.options.takeoverWaitMs)}` : '';
      return {
        granted: false,
        code: 'GROUP_ACTIVE_ELSEWHERE',
        reason: `group "${group}" is active on ${where}${notLetGo}; it becomes free when its client leaves or that node's etcd lease ends (within ${formatDuration(this.options.lease.safeMs * 1.5)} of losing etcd)`,
      };
    });
  }

  private unreachable(error: Error): Claim {
    return { granted: false, code: 'NODE_UNAVAILABLE', reason: `node ${this.node} could not reach etcd (${error.message}); try another node` };
  }

  /** Only the same client may end its own session on another node, as on a single server. */
  private mayTakeOver(holder: ActivationRecord | undefined, clientId: string): holder is ActivationRecord {
    return holder !== undefined && holder.node !== this.node && holder.clientId === clientId && this.options.takeoverWaitMs > 0;
  }

  /** Creates `PREFIX/active/NAME` for this node if it does not exist. */
  private async create(group: string, clientId: string, leaseId: string): Promise<Attempt> {
    const { etcd, keys } = this.options;
    const key = keys.activation(group);
    const record: ActivationRecord = { ...this.options.self(), clientId, since: new Date().toISOString() };
    this.etcdTraffic.claims += 1;
    this.etcdTraffic.requests += 1;
    let answer;
    try {
      answer = await etcd
        .if(key, 'Create', '==', 0)
        .then(etcd.put(key).value(JSON.stringify(record)).lease(leaseId))
        .else(etcd.get(key))
        .commit();
    } catch (error) {
      return { claim: this.unreachable(error as Error) };
    }
    if (answer.succeeded) {
      // The lease may have been given up while etcd answered: the key then dies with it.
      if (!this.options.lease.holds(leaseId))
        return { claim: { granted: false, code: 'NODE_UNAVAILABLE', reason: `node ${this.node} lost its etcd lease during the login; try another node` } };
      // The transaction's one write is the key's creation: its revision is the transaction's.
      this.held.set(group, { leaseId, createdAt: BigInt(answer.header.revision) });
      return { claim: { granted: true } };
    }
    const kv = answer.responses[0]?.response_range.kvs[0];
    const holder = parseRecord<ActivationRecord>(kv?.value.toString('utf8'));
    // Our own key (a release that failed to reach etcd): still ours.
    if (kv !== undefined && holder?.node === this.node && kv.lease === leaseId) {
      this.held.set(group, { leaseId, createdAt: BigInt(kv.create_revision) });
      return { claim: { granted: true } };
    }
    return { holder, readAt: BigInt(answer.header.revision) };
  }

  /**
   * The group is held by another node for this same client (its old session, on a path that
   * may be silently dead): asks that node through `PREFIX/takeover/NAME` to end it, waits up
   * to takeoverWaitMs for the active key to change, then tries to create it once more. The
   * request is removed on every path (and would die with this node's lease besides).
   */
  private async takeOver(group: string, clientId: string, leaseId: string, holder: ActivationRecord, readAt: bigint): Promise<Attempt> {
    const { etcd, keys } = this.options;
    const key = keys.takeover(group);
    // Listening before asking: the answer may come before the put returns.
    const changed = firstValueFrom(
      race(
        this.activeChanges.pipe(
          filter((change) => change.name === group && BigInt(change.revision) > readAt),
          map(() => true),
        ),
        timer(this.options.takeoverWaitMs).pipe(map(() => false)),
      ),
      { defaultValue: false },
    );
    const request: TakeoverRecord = { ...this.options.self(), clientId, since: new Date().toISOString() };
    try {
      this.etcdTraffic.requests += 1;
      await etcd.put(key).value(JSON.stringify(request)).lease(leaseId);
      debug('asked node %s to let %s go (client %s)', holder.node, group, clientId);
      // A change applied before the listener above was in place.
      const now = parseRecord<ActivationRecord>(this.active.entries.get(group));
      const alreadyChanged = this.active.revision > readAt && (now === undefined || now.node !== holder.node || now.since !== holder.since);
      if (!alreadyChanged && !(await changed)) return { holder, readAt, unanswered: true };
      return await this.create(group, clientId, leaseId);
    } catch (error) {
      return { claim: this.unreachable(error as Error) };
    } finally {
      this.etcdTraffic.requests += 1;
      // Only our own request: another node may have asked since.
      await etcd
        .if(key, 'Lease', '==', leaseId)
        .then(etcd.delete().key(key))
        .commit()
        .catch((error: Error) => debug('takeover request for %s not removed (the lease will): %s', group, error.message));
    }
  }

  release(group: string): void {
    const leaseId = this.held.get(group)?.leaseId;
    if (leaseId === undefined) return;
    this.held.delete(group);
    void this.serial(group, async () => {
      const { etcd, keys } = this.options;
      const key = keys.activation(group);
      this.etcdTraffic.requests += 1;
      // Only our own key: after a lost lease another node may hold the group already.
      await etcd.if(key, 'Lease', '==', leaseId).then(etcd.delete().key(key)).commit();
    }).catch((error: Error) => debug('release of %s did not reach etcd (the lease will free it): %s', group, error.message));
  }

  /** The lease is gone: every key it held is gone (or will be) with it. */
  forgetAll(): void {
    this.held.clear();
  }

  nodes(): ClusterNodeInfo[] {
    return [...this.nodeRecords.entries.values()]
      .map((text) => parseRecord<NodeRecord>(text))
      .filter((record) => record !== undefined)
      .map((record) => ({ name: record.node, advertise: record.advertise, commonPort: record.commonPort, self: record.node === this.node }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  activation(group: string): ClusterActivation | undefined {
    const record = parseRecord<ActivationRecord>(this.active.entries.get(group));
    return record === undefined
      ? undefined
      : { node: record.node, advertise: record.advertise, commonPort: record.commonPort, clientId: record.clientId, since: record.since };
  }

  activations(): Map<string, ClusterActivation> {
    const all = new Map<string, ClusterActivation>();
    for (const name of this.active.entries.keys()) {
      const activation = this.activation(name);
      if (activation !== undefined) all.set(name, activation);
    }
    return all;
  }

  leaseHeld(): boolean {
    return this.options.lease.current.held;
  }

  async close(): Promise<void> {
    await Promise.all([this.active.close(), this.nodeRecords.close(), this.takeoverRequests.close()]);
    this.activeChanges.complete();
  }
}
