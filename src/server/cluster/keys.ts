/**
 * The cluster's keys in etcd, all under the configured prefix:
 *
 *   PREFIX/groups/NAME   the group file's text (readyGroup): YAML as the admin API or
 *                        `cluster import` stored it, a `${VAR}` secret still a reference
 *   PREFIX/active/NAME   the node serving the group (inUseGroup), attached to its lease
 *   PREFIX/nodes/NODE    a live node and its advertised address, attached to its lease
 *   PREFIX/takeover/NAME a node's request that the node serving NAME let it go to a new
 *                        session of the same client, attached to the asking node's lease
 */
export class ClusterKeys {
  constructor(readonly prefix: string) {}

  get groups(): string {
    return `${this.prefix}/groups/`;
  }
  get active(): string {
    return `${this.prefix}/active/`;
  }
  get nodes(): string {
    return `${this.prefix}/nodes/`;
  }
  get takeovers(): string {
    return `${this.prefix}/takeover/`;
  }
  group(name: string): string {
    return this.groups + name;
  }
  activation(name: string): string {
    return this.active + name;
  }
  node(name: string): string {
    return this.nodes + name;
  }
  takeover(name: string): string {
    return this.takeovers + name;
  }
}

/** The record of `PREFIX/nodes/NODE`. */
export interface NodeRecord {
  node: string;
  advertise: string;
  commonPort: number;
}

/** The record of `PREFIX/active/NAME`. */
export interface ActivationRecord extends NodeRecord {
  clientId: string;
  since: string;
}

/**
 * The record of `PREFIX/takeover/NAME`: the asking node, the client id whose login it has
 * authenticated, and when it asked. Shaped as an activation record: it is the activation
 * the asking node is waiting to write.
 */
export type TakeoverRecord = ActivationRecord;

/** A record read back from etcd; anything malformed is treated as absent. */
export function parseRecord<T extends NodeRecord>(text: string | undefined): T | undefined {
  if (text === undefined) return undefined;
  try {
    const value = JSON.parse(text) as Partial<T>;
    return typeof value.node === 'string' && typeof value.advertise === 'string' && typeof value.commonPort === 'number' ? (value as T) : undefined;
  } catch {
    return undefined;
  }
}
