import { parseCount, parseDuration } from './values.js';
import type { YamlFile } from './yaml-file.js';

/**
 * What a UDP app adds to an app of a group file (`type: udp`, and an optional `udp:` section).
 * Kept apart from the TCP fields: a UDP app's users are sessions keyed by their address, not
 * connections, so its limits are of another kind.
 */
export interface UdpAppOptions {
  /** `udp`: datagrams, one session per user address. Absent: a TCP app (the default). */
  readonly type?: 'udp';
  /** Present exactly when `type` is `udp`, with every default applied. */
  readonly udp?: UdpSettings;
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

export const UDP_APP_KEYS = ['type', 'udp'] as const;
const UDP_SETTINGS_KEYS = ['idleTimeout', 'maxSessions', 'maxDatagramBytes'] as const;
const APP_TYPES = ['tcp', 'udp'] as const;

/** Reads `type` and `udp` of the app at `path` (already known to be a mapping). */
export function parseUdpAppOptions(yaml: YamlFile, path: (string | number)[], app: Record<string, unknown>): UdpAppOptions {
  const type = app.type ?? 'tcp';
  if (typeof type !== 'string' || !(APP_TYPES as readonly string[]).includes(type)) {
    throw yaml.error([...path, 'type'], `expected tcp or udp, got ${JSON.stringify(type)}`);
  }
  if (type === 'tcp') {
    if (app.udp !== undefined) throw yaml.error([...path, 'udp'], 'udp settings need type: udp');
    return {};
  }
  if (app.maxConnections !== undefined) {
    throw yaml.error([...path, 'maxConnections'], 'a UDP app has sessions, not connections: use udp.maxSessions');
  }
  if (app.udp === undefined) return { type: 'udp', udp: UDP_DEFAULTS };
  const raw = yaml.mapAt([...path, 'udp'], app.udp);
  yaml.onlyKeys([...path, 'udp'], raw, UDP_SETTINGS_KEYS);
  const at = (key: string): (string | number)[] => [...path, 'udp', key];
  const idleTimeoutMs = raw.idleTimeout === undefined ? UDP_DEFAULTS.idleTimeoutMs : yaml.expect(at('idleTimeout'), parseDuration(raw.idleTimeout));
  if (idleTimeoutMs < 100) throw yaml.error(at('idleTimeout'), `expected at least 100ms, got ${idleTimeoutMs}ms`);
  const maxSessions = raw.maxSessions === undefined ? UDP_DEFAULTS.maxSessions : yaml.expect(at('maxSessions'), parseCount(raw.maxSessions, { min: 1, max: 65_536 }));
  const maxDatagramBytes =
    raw.maxDatagramBytes === undefined ? UDP_DEFAULTS.maxDatagramBytes : yaml.expect(at('maxDatagramBytes'), parseCount(raw.maxDatagramBytes, { min: 1, max: MAX_UDP_PAYLOAD_BYTES }));
  return { type: 'udp', udp: Object.freeze({ idleTimeoutMs, maxSessions, maxDatagramBytes }) };
}

/** `tcp` or `udp`: the protocol half of a public port's identity. */
export function appProtocol(app: UdpAppOptions): 'tcp' | 'udp' {
  return app.type ?? 'tcp';
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
