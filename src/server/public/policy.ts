import { BlockList, isIPv4 } from 'node:net';
import { DEFAULT_MAX_PORT_RANGE, formatPath, parseCidr, portRangeRefusal, type AppSpec, type GroupSpec, type PolicyConfig } from '../../config/index.js';

/**
 * Server-side policy from commonserver.yaml and the group files. The registry is the
 * authority: a client cannot widen any of this.
 */

/** Why a group may not be activated now, or undefined when it may. */
export function groupRefusal(policy: PolicyConfig, spec: GroupSpec, activeGroups: number, replacesLive: boolean): string | undefined {
  if (policy.maxAppsPerGroup !== undefined && spec.apps.length > policy.maxAppsPerGroup) {
    return `group "${spec.name}" has ${spec.apps.length} apps; this server allows at most ${policy.maxAppsPerGroup} per group`;
  }
  const range = portRangeRefusal(spec, policy.maxPortRange ?? DEFAULT_MAX_PORT_RANGE);
  if (range !== undefined) return `${spec.file}: ${formatPath(range.path)}: ${range.problem}`;
  // A takeover replaces a live session of the same group: it does not add one.
  if (policy.maxGroups !== undefined && !replacesLive && activeGroups >= policy.maxGroups) {
    return `this server allows at most ${policy.maxGroups} active group${policy.maxGroups === 1 ? '' : 's'}, and that many are active`;
  }
  return undefined;
}

/** An app's `allow` list and `maxConnections`, checked for each UserConn at accept. */
export class AppAccessControl {
  private readonly allowList: BlockList | undefined;

  constructor(private readonly spec: AppSpec) {
    if (spec.allow !== undefined) {
      this.allowList = new BlockList();
      for (const entry of spec.allow) {
        const cidr = parseCidr(entry)!; // validated when the group file was read
        this.allowList.addSubnet(cidr.address, cidr.prefix, cidr.family);
      }
    }
  }

  /** Why this user may not connect (given how many conns the app already has), or undefined. */
  refusal(remoteAddress: string | undefined, openConns: number): string | undefined {
    if (this.allowList !== undefined) {
      const address = unmapped(remoteAddress ?? '');
      const family = isIPv4(address) ? 'ipv4' : 'ipv6';
      if (address === '' || !this.allowList.check(address, family)) return `${address || 'unknown address'} is not in the app's allow list`;
    }
    if (this.spec.maxConnections !== undefined && openConns >= this.spec.maxConnections) {
      return `the app already has its maximum of ${this.spec.maxConnections} connection${this.spec.maxConnections === 1 ? '' : 's'}`;
    }
    return undefined;
  }
}

/** "::ffff:10.1.2.3" (an IPv4 user on a dual-stack socket) → "10.1.2.3". */
function unmapped(address: string): string {
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : undefined;
  return v4 !== undefined && isIPv4(v4) ? v4 : address;
}
