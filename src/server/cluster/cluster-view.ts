/** A node of the cluster as every node sees it (from its record in etcd). */
export interface ClusterNodeInfo {
  name: string;
  /** The host clients and users reach it at. */
  advertise: string;
  commonPort: number;
  self: boolean;
}

/** Where a group is active in the cluster (its key in etcd's inUseGroup). */
export interface ClusterActivation {
  node: string;
  advertise: string;
  commonPort: number;
  clientId: string;
  since: string;
}

/**
 * What the admin surface of a cluster node shows beyond its own server: every node and
 * every activation, whichever node holds it. Types only, so the admin code loads no etcd.
 */
export interface ClusterView {
  readonly node: string;
  /** Where the cluster's keys live in etcd. */
  readonly prefix: string;
  nodes(): ClusterNodeInfo[];
  activation(group: string): ClusterActivation | undefined;
  /** Every activation in the cluster, by group. */
  activations(): Map<string, ClusterActivation>;
  /** False while this node holds no lease: it serves nothing and accepts no login. */
  leaseHeld(): boolean;
}
