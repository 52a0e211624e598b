import createDebug from 'debug';
import type { Etcd3 } from 'etcd3';
import type { ActivationGate, Claim } from '../activation-gate.js';
import type { ClusterActivation, ClusterNodeInfo, ClusterView } from '../cluster-view.js';
import type { ClusterKeys, ActivationRecord, NodeRecord } from './keys.js';
import { parseRecord } from './keys.js';
import type { NodeLease } from './node-lease.js';
import { PrefixMirror } from './prefix-mirror.js';

const debug = createDebug('ntp:server:cluster:claims');

export interface GroupClaimsOptions {
  etcd: Etcd3;
  keys: ClusterKeys;
  lease: NodeLease;
  self: () => NodeRecord;
  /** A group this node serves whose key now names another node, or is gone: stop serving it. */
  onClaimLost: (group: string) => void;
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
  /** Claims and releases of one group run one after another. */
  private readonly queues = new Map<string, Promise<unknown>>();
  /** Groups this node holds (with the lease that holds them). */
  private readonly held = new Map<string, string>();
  private etcdTraffic = { claims: 0, requests: 0 };

  constructor(private readonly options: GroupClaimsOptions) {
    this.active = new PrefixMirror(options.etcd, options.keys.active, (change) => {
      const leaseId = this.held.get(change.name);
      if (leaseId === undefined) return;
      const record = change.kind === 'put' ? parseRecord<ActivationRecord>(change.value) : undefined;
      // Someone removed our key (an operator, or a lease that expired behind our back): we no longer hold it.
      if (record === undefined || record.node !== this.node) {
        debug('claim on %s lost in etcd', change.name);
        this.held.delete(change.name);
        options.onClaimLost(change.name);
      }
    });
    this.nodeRecords = new PrefixMirror(options.etcd, options.keys.nodes, (change) => {
      if (change.kind === 'delete' && change.name === this.node) options.lease.recordDeleted(change.revision);
    });
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
    await Promise.all([this.active.start(), this.nodeRecords.start()]);
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
      const { etcd, keys } = this.options;
      const key = keys.activation(group);
      const record: ActivationRecord = { ...this.options.self(), clientId: info.clientId, since: new Date().toISOString() };
      this.etcdTraffic.claims += 1;
      this.etcdTraffic.requests += 1;
      let answer;
      try {
        answer = await etcd
          .if(key, 'Create', '==', 0)
          .then(etcd.put(key).value(JSON.stringify(record)).lease(state.leaseId))
          .else(etcd.get(key))
          .commit();
      } catch (error) {
        return { granted: false, code: 'NODE_UNAVAILABLE', reason: `node ${this.node} could not reach etcd (${(error as Error).message}); try another node` };
      }
      if (answer.succeeded) {
        // The lease may have been given up while etcd answered: the key then dies with it.
        if (!this.options.lease.holds(state.leaseId))
          return { granted: false, code: 'NODE_UNAVAILABLE', reason: `node ${this.node} lost its etcd lease during the login; try another node` };
        this.held.set(group, state.leaseId);
        return { granted: true };
      }
      const kv = answer.responses[0]?.response_range.kvs[0];
      const holder = parseRecord<ActivationRecord>(kv?.value.toString('utf8'));
      // Our own key (a release that failed to reach etcd): still ours.
      if (holder?.node === this.node && kv?.lease === state.leaseId) {
        this.held.set(group, state.leaseId);
        return { granted: true };
      }
      const where = holder === undefined ? 'another node' : `node ${holder.node} (${holder.advertise}:${holder.commonPort}) since ${holder.since}`;
      return {
        granted: false,
        code: 'GROUP_ACTIVE_ELSEWHERE',
        reason: `group "${group}" is active on ${where}; it becomes free when its client leaves or that node's etcd lease ends (within ${this.options.lease.safeMs * 1.5}ms of losing etcd)`,
      };
    });
  }

  release(group: string): void {
    const leaseId = this.held.get(group);
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
    await Promise.all([this.active.close(), this.nodeRecords.close()]);
  }
}
