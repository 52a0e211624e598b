import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Etcd3, type IKeyValue, type Watcher } from 'etcd3';
import { GroupClaims } from '../../src/server/cluster/group-claims.js';
import { ClusterKeys, type ActivationRecord, type NodeRecord } from '../../src/server/cluster/keys.js';
import { NodeLease } from '../../src/server/cluster/node-lease.js';
import { etcdAvailable, EtcdCluster } from '../helpers/etcd-cluster.js';
import {} from '../helpers/net.js';
import { eventually } from '../helpers/eventually.js';

/**
 * Watch events held back until the test lets them go, in etcd's order: a watch that lags
 * behind a node's own transactions, made to lag on purpose. Every other call reaches etcd as is.
 */
class WatchGate {
  private held: (() => void)[] | undefined;

  hold(): void {
    this.held ??= [];
  }

  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const deliver of held) deliver();
  }

  /** `etcd` whose watchers deliver `put` and `delete` through this gate. */
  wrap(etcd: Etcd3): Etcd3 {
    const gate = this;
    const wrapWatcher = (watcher: Watcher): Watcher =>
      new Proxy(watcher, {
        get(target, property) {
          if (property !== 'on') return bound(target, property);
          return (event: string, listener: (kv: IKeyValue) => void) => {
            const gated = event === 'put' || event === 'delete' ? (kv: IKeyValue) => gate.pass(() => listener(kv)) : listener;
            target.on(event as 'put', gated);
            return watcher;
          };
        },
      });
    const wrapBuilder = <B extends object>(builder: B): B =>
      new Proxy(builder, {
        get(target, property) {
          const value = bound(target, property);
          if (typeof value !== 'function') return value;
          if (property === 'create') return async () => wrapWatcher(await (value as () => Promise<Watcher>)());
          // The builder's chained calls return the builder itself: keep returning the wrapped one.
          return (...args: unknown[]) => {
            const result: unknown = (value as (...args: unknown[]) => unknown)(...args);
            return result === target ? wrapBuilder(target) : result;
          };
        },
      });
    return new Proxy(etcd, {
      get(target, property) {
        if (property === 'watch') return () => wrapBuilder(target.watch());
        return bound(target, property);
      },
    });
  }

  private pass(deliver: () => void): void {
    if (this.held === undefined) deliver();
    else this.held.push(deliver);
  }
}

function bound(target: object, property: string | symbol): unknown {
  const value: unknown = Reflect.get(target, property, target);
  return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
}

const client = (clientId: string) => ({ clientId, clientAddress: '127.0.0.1' });

describe(
  'a node that claims a group keeps it when the watch delivers an older change of its key late',
  { skip: etcdAvailable() ? false : 'etcd is not installed (apt-get install etcd-server)', timeout: 60_000 },
  () => {
    let etcd: EtcdCluster;
    let direct: Etcd3;
    const gate = new WatchGate();
    let keys: ClusterKeys;
    let lease: NodeLease;
    let claims: GroupClaims;
    const lost: string[] = [];

    before(async () => {
      etcd = await EtcdCluster.start(1);
      direct = new Etcd3({ hosts: etcd.endpoints });
      keys = new ClusterKeys(`/ntp-claims-${process.pid}`);
      const gated = gate.wrap(new Etcd3({ hosts: etcd.endpoints }));
      const self: NodeRecord = { node: 'b', advertise: '127.0.0.1', commonPort: 7001 };
      lease = new NodeLease(gated, { ttlMs: 10_000, nodeKey: keys.node('b'), nodeValue: () => JSON.stringify(self) });
      claims = new GroupClaims({
        etcd: gated,
        keys,
        lease,
        self: () => self,
        onClaimLost: (group) => lost.push(group),
        onTakeoverAsked: () => undefined,
        takeoverWaitMs: 0,
      });
      await lease.start();
      await claims.start();
    });

    after(async () => {
      await claims?.close();
      await lease?.close();
      direct?.close();
      await etcd?.stop();
    });

    /** Resolves once node b's copy of the active keys shows its claim of `group` for `clientId` (so every earlier change is applied too). */
    const seen = (group: string, clientId: string) =>
      eventually(() => claims.activation(group)?.node === 'b' && claims.activation(group)?.clientId === clientId, {
        message: `node b to see its claim of ${group} for ${clientId}`,
        timeout: 10_000,
      });

    test("the old holder's key, put then deleted by its lease, reaches node b after b claimed: no LEASE_LOST", async () => {
      lost.length = 0;
      gate.hold();
      // Node a held the group; its lease ends (a failover): etcd deletes the key.
      const oldLease = direct.lease(30, { autoKeepAlive: false });
      const oldLeaseId = await oldLease.grant();
      const record: ActivationRecord = { node: 'a', advertise: '127.0.0.1', commonPort: 7000, clientId: 'agent', since: new Date().toISOString() };
      await direct.put(keys.activation('ka')).value(JSON.stringify(record)).lease(oldLeaseId);
      await oldLease.revoke();
      // Node b claims the free key before its watch delivered either change.
      assert.deepEqual(await claims.claim('ka', client('agent')), { granted: true });
      gate.release();
      await seen('ka', 'agent');
      assert.deepEqual(lost, []);
    });

    test("node b's own earlier release reaches it after b claimed the group again: no LEASE_LOST", async () => {
      lost.length = 0;
      assert.deepEqual(await claims.claim('kb', client('first')), { granted: true });
      await seen('kb', 'first');
      gate.hold();
      claims.release('kb');
      // Claims and releases of one group run in order: this claim follows the release's delete.
      assert.deepEqual(await claims.claim('kb', client('second')), { granted: true });
      gate.release();
      await seen('kb', 'second');
      assert.deepEqual(lost, []);
    });

    test('a key of another lease written after the claim is still a loss', async () => {
      lost.length = 0;
      assert.deepEqual(await claims.claim('kc', client('agent')), { granted: true });
      await seen('kc', 'agent');
      const other = direct.lease(30, { autoKeepAlive: false });
      const otherId = await other.grant();
      const record: ActivationRecord = { node: 'c', advertise: '127.0.0.1', commonPort: 7002, clientId: 'agent', since: new Date().toISOString() };
      await direct.put(keys.activation('kc')).value(JSON.stringify(record)).lease(otherId);
      await eventually(() => lost.length > 0, { message: 'the loss to be reported', timeout: 10_000 });
      assert.deepEqual(lost, ['kc']);
      await other.revoke();
    });
  },
);
