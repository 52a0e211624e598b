import type { z } from 'zod';
import type { AppType } from './app-type.js';
import { udpAppOptions, type UdpSettings } from './udp-app.js';
import { appPublicSide, type VhostAppSpec, type vhostAppShape } from './vhost-app.js';

/** What an app's type decides, as the code reads it. */
export interface AppKind {
  /** Absent for a TCP app (the default). */
  readonly type?: Exclude<AppType, 'tcp'>;
  /** The public port for tcp and udp apps (0: the server chooses); 0 for vhost apps. */
  readonly remotePort: number;
  /** Present exactly for a udp app, with every default applied. */
  readonly udp?: UdpSettings;
  /** Present exactly for an http or https app. */
  readonly vhost?: VhostAppSpec;
}

type KindFields = z.output<z.ZodObject<ReturnType<typeof vhostAppShape>>> & {
  type: AppType;
  remotePort?: number | undefined;
  udp?: Parameters<typeof udpAppOptions>[0]['udp'];
  maxConnections?: number | undefined;
  /** The app's proxyProtocol and bandwidth, which only TCP apps may have. */
  traffic: { proxyProtocol?: unknown; bandwidth?: unknown };
};

/**
 * The one transform of an app's type: each kind keeps its own fields and checks (udp: its
 * `udp:` section; http: names, locations, rewrite and basic auth; https: names), and a field
 * of another kind is an issue at that field.
 */
export function appKind({ type, udp, maxConnections, traffic, ...publicSide }: KindFields, ctx: z.RefinementCtx): AppKind {
  // Both act on a TCP stream of the user's own (a header before its first byte, paused reads):
  // a datagram relay has neither, and a vhost user's conn is shared by requests of several apps.
  for (const field of ['proxyProtocol', 'bandwidth'] as const) {
    if (type !== 'tcp' && traffic[field] !== undefined)
      ctx.addIssue({ code: 'custom', path: [field], message: `${field} applies to TCP apps, not to type: ${type}` });
  }
  const side = appPublicSide({ type, ...publicSide }, ctx);
  const udpSide = udpAppOptions({ type, udp, maxConnections }, ctx);
  return { ...(type === 'tcp' ? {} : { type }), ...side, ...udpSide };
}
