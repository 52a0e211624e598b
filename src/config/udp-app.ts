import { z } from 'zod';
import type { AppType } from './app-type.js';
import { section } from './sections.js';
import { duration, wholeNumber } from './values.js';

/**
 * What a UDP app adds to an app of a group file (`type: udp`, and an optional `udp:` section).
 * Kept apart from the TCP fields: a UDP app's users are sessions keyed by their address, not
 * connections, so its limits are of another kind.
 */
export interface UdpAppOptions {
  /** `udp`: datagrams, one session per user address. Absent: a TCP app (the default). */
  readonly type?: Exclude<AppType, 'tcp'> | undefined;
  /** Present exactly when `type` is `udp`, with every default applied. */
  readonly udp?: UdpSettings | undefined;
}

export interface UdpSettings {
  /** A session with no datagram either way for this long is closed (its local socket too). */
  readonly idleTimeoutMs: number;
  /** Sessions of this app at once; datagrams from new user addresses beyond it are dropped. */
  readonly maxSessions: number;
  /** Larger datagrams are dropped (either way), counted as `oversize`. */
  readonly maxDatagramBytes: number;
}

/** The largest payload of a UDP datagram over IPv4 (65,535 minus the IP and UDP headers). */
export const MAX_UDP_PAYLOAD_BYTES = 65_507;

export const UDP_DEFAULTS: UdpSettings = Object.freeze({
  idleTimeoutMs: 60_000,
  // Each session holds a work conn (a TLS socket, ~30 KB) and a local socket on the client.
  maxSessions: 1024,
  // DNS with EDNS answers up to 4096 bytes; WireGuard, QUIC and games stay under 1500.
  maxDatagramBytes: 8192,
});

/** The `udp:` section a UDP app may add (its `type: udp` is the app's type, in app-type.ts). */
export const udpAppShape = {
  udp: section({
    idleTimeout: duration.optional().meta({ description: 'A session with no datagram either way for this long is closed (default 60s)' }),
    maxSessions: wholeNumber(1, 65_536)
      .optional()
      .meta({ description: 'Sessions (user addresses) at once; datagrams from new ones beyond it are dropped (default 1024)' }),
    maxDatagramBytes: wholeNumber(1, MAX_UDP_PAYLOAD_BYTES).optional().meta({ description: 'Larger datagrams are dropped, either way (default 8192)' }),
  })
    .optional()
    .meta({ description: 'UDP settings (type: udp only)' }),
};

type UdpAppFields = z.output<z.ZodObject<typeof udpAppShape>> & { type: AppType; maxConnections?: number | undefined };

/**
 * A UDP app's `udp` as the code reads it: nothing for another type, every default applied for
 * UDP. Contradictions are issues at the field to change.
 */
export function udpAppOptions({ type, udp, maxConnections }: UdpAppFields, ctx: z.RefinementCtx): { udp?: UdpSettings } {
  if (type !== 'udp') {
    if (udp !== undefined) ctx.addIssue({ code: 'custom', path: ['udp'], message: 'udp settings need type: udp' });
    return {};
  }
  if (maxConnections !== undefined)
    ctx.addIssue({ code: 'custom', path: ['maxConnections'], message: 'a UDP app has sessions, not connections: use udp.maxSessions' });
  const idleTimeoutMs = udp?.idleTimeout ?? UDP_DEFAULTS.idleTimeoutMs;
  if (idleTimeoutMs < 100) ctx.addIssue({ code: 'custom', path: ['udp', 'idleTimeout'], message: `expected at least 100ms, got ${idleTimeoutMs}ms` });
  return {
    udp: Object.freeze({
      idleTimeoutMs,
      maxSessions: udp?.maxSessions ?? UDP_DEFAULTS.maxSessions,
      maxDatagramBytes: udp?.maxDatagramBytes ?? UDP_DEFAULTS.maxDatagramBytes,
    }),
  };
}

/** `tcp` or `udp`: the protocol half of a public port's identity. */
export function appProtocol(app: UdpAppOptions): 'tcp' | 'udp' {
  // http and https apps are TCP underneath (their user conns and work conns are streams).
  return app.type === 'udp' ? 'udp' : 'tcp';
}

/**
 * What a public port is known by in the registry: a UDP app and a TCP app may share a port
 * number (DNS on 53, iperf3 on 5201), as the kernel lets them.
 */
export function portKey(app: UdpAppOptions & { readonly remotePort: number }): string {
  return `${app.remotePort}/${appProtocol(app)}`;
}

/** A public port in words: `6080` for TCP (the default, as everywhere), `53/udp` for UDP. */
export function portLabel(app: UdpAppOptions & { readonly remotePort: number }): string {
  return app.type === 'udp' ? portKey(app) : String(app.remotePort);
}

/** `{ protocol: 'udp' }` for a UDP app, nothing for TCP: how messages about an app mark its protocol. */
export function protocolMark(app: UdpAppOptions): { protocol?: 'udp' } {
  return app.type === 'udp' ? { protocol: 'udp' } : {};
}
