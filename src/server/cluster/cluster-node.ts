import createDebug from 'debug';
import type { Etcd3 } from 'etcd3';
import type { Subscription } from 'rxjs';
import type { ClusterConfig } from '../../config/index.js';
import type { CommonServer } from '../common-server.js';
import { connectEtcd, explainEtcdFailure } from './etcd-client.js';
import { EtcdRegistry } from './etcd-registry.js';
import { GroupClaims, takeoverWaitFor } from './group-claims.js';
import { ClusterKeys, type NodeRecord, type TakeoverRecord } from './keys.js';
import { NodeLease } from './node-lease.js';

const debug = createDebug('ntp:server:cluster:node');

export interface ClusterNodeOptions {
  config: ClusterConfig;
  /** Where relative `secretFile:` paths of stored groups are read on this node. */
  baseDir: string;
  /** A line for the operator (lease lost, regained). */
  say?: (line: string) => void;
  /** The server's login deadline: a login waiting for another node to let its client's group go must end within it. */
  handshakeTimeoutMs: number;
}

/**
 * One commonserver as a node of the cluster: its etcd lease, its claims on groups
 * (inUseGroup) and the shared registry (readyGroup). Built before the server (the server
 * asks the claims before each activation), attached to it once it exists.
 */
export class ClusterNode {
  readonly etcd: Etcd3;
  readonly keys: ClusterKeys;
  readonly lease: NodeLease;
  readonly claims: GroupClaims;
  private commonPort = 0;
  private registry: EtcdRegistry | undefined;
  private leaseWatch: Subscription | undefined;

  constructor(private readonly options: ClusterNodeOptions) {
    const { config } = options;
    this.etcd = connectEtcd(config);
    this.keys = new ClusterKeys(config.prefix);
    this.lease = new NodeLease(this.etcd, { ttlMs: config.leaseTtlMs, nodeKey: this.keys.node(config.node), nodeValue: () => JSON.stringify(this.record()) });
    this.claims = new GroupClaims({
      etcd: this.etcd,
      keys: this.keys,
      lease: this.lease,
      self: () => this.record(),
      onClaimLost: (group) => this.server?.inUseGroup.get(group)?.deactivate('LEASE_LOST', `node ${config.node} no longer holds group ${group} in etcd`),
      onTakeoverAsked: (group, request) => this.letGo(group, request),
      takeoverWaitMs: takeoverWaitFor(options.handshakeTimeoutMs),
    });
  }

  private server: CommonServer | undefined;

  /**
   * Another node checked a login of the client whose session serves `group` here: the same
   * rule as a takeover on one server (the new authenticated session of the same client wins).
   * Its users reset; the release that follows frees the key for the asking node.
   */
  private letGo(group: string, request: TakeoverRecord): void {
    const live = this.server?.inUseGroup.get(group);
    if (live === undefined || live.clientId !== request.clientId) return;
    live.deactivate('TAKEN_OVER', `taken over by a new session of the same client on node ${request.node} (${request.advertise}:${request.commonPort})`);
  }

  private record(): NodeRecord {
    return { node: this.options.config.node, advertise: this.options.config.advertise, commonPort: this.commonPort };
  }

  /**
   * Serves `server` from the cluster: the registry is read from etcd and watched, and the
   * loss of the lease ends every session at once. Returns the registry for the admin API.
   */
  async attach(server: CommonServer): Promise<EtcdRegistry> {
    this.server = server;
    const say = this.options.say ?? (() => undefined);
    this.leaseWatch = this.lease.state$.subscribe((state) => {
      if (state.held) {
        if (state.generation > 1) say(`cluster: node ${this.options.config.node} holds a new etcd lease; accepting logins again`);
        return;
      }
      if (server.inUseGroup.size > 0 || state.reason !== 'not granted yet') {
        // Before etcd could give these groups to another node: never two nodes serving one group.
        const live = server.inUseGroup.size;
        this.claims.forgetAll();
        server.deactivateAll('LEASE_LOST', `node ${this.options.config.node} lost its etcd lease (${state.reason}); log in on another node`);
        if (state.reason !== 'the node is shutting down')
          say(`cluster: etcd lease lost (${state.reason}); dropped ${live} group(s), refusing logins until a new lease is held`);
      }
    });
    this.registry = new EtcdRegistry({
      etcd: this.etcd,
      keys: this.keys,
      server,
      baseDir: this.options.baseDir,
      onResync: (why, groups) => say(`cluster: the registry watch broke (${why}); read ${groups} group(s) from etcd again and applied the differences`),
    });
    await this.registry.start();
    await this.claims.start();
    return this.registry;
  }

  /** Grants the first lease (retrying while etcd does not answer: `onRetry` is told why and how long it waits). */
  async join(onRetry?: (reason: string, delayMs: number) => void): Promise<void> {
    await this.lease.start(onRetry && ((reason, delayMs) => onRetry(explainEtcdFailure(reason, this.options.config), delayMs)));
  }

  /** Publishes the common port this node listens on (its record in `PREFIX/nodes/`). */
  async announce(commonPort: number): Promise<void> {
    this.commonPort = commonPort;
    const state = this.lease.current;
    if (state.held) {
      const put = await this.etcd.put(this.keys.node(this.options.config.node)).value(JSON.stringify(this.record())).lease(state.leaseId);
      this.lease.recordWritten(put.header.revision);
    }
    debug('announced %o', this.record());
  }

  async close(): Promise<void> {
    this.leaseWatch?.unsubscribe();
    await this.registry?.close();
    await this.claims.close();
    await this.lease.close();
    this.etcd.close();
  }
}
