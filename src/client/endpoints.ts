import { parseHostPort, parseProxyUrl, type GroupSpec, type HostPort, type Parsed } from '../config/index.js';
import type { ServerEndpoint } from './group-client.js';
import { clientTransport } from './tls.js';

export const DEFAULT_SERVER: HostPort = Object.freeze({ host: '127.0.0.1', port: 7000 });

export interface EndpointOptions {
  /** `--server`: one HOST:PORT, or a cluster's nodes comma-separated; replaces the file's. */
  server?: string;
  /** `--server-fingerprint`: one for every server, or one per server, comma-separated. */
  serverFingerprint?: string;
  plaintext?: boolean;
  /** `--proxy URL`: replaces the file's `proxy:`. */
  proxy?: string;
}

/**
 * The servers a client tries, in turn, and how it trusts each: `--server` over the file's
 * `server:` / `servers:`, else the default; a pin from `--server-fingerprint`, else the
 * node's own in `servers:`, else the file's. A bad option is returned as a problem naming it;
 * what clientTransport refuses (a contradiction with plaintext) is thrown as a ConfigError.
 * The running client and `groupclient verify` read the command line through this one place.
 */
export function clientEndpoints(spec: GroupSpec, options: EndpointOptions): Parsed<ServerEndpoint[]> {
  let servers: { address: HostPort; fingerprint?: string }[] = spec.servers ? [...spec.servers] : [{ address: spec.server ?? DEFAULT_SERVER }];
  if (options.server !== undefined) {
    servers = [];
    for (const item of options.server.split(',')) {
      const parsed = parseHostPort(item);
      if (!parsed.ok) return { ok: false, problem: `--server: ${parsed.problem}` };
      servers.push({ address: parsed.value });
    }
  }
  const proxy = options.proxy === undefined ? undefined : parseProxyUrl(options.proxy);
  if (proxy !== undefined && !proxy.ok) return { ok: false, problem: `--proxy: ${proxy.problem}` };
  const fingerprints = options.serverFingerprint?.split(',');
  if (fingerprints !== undefined && fingerprints.length !== 1 && fingerprints.length !== servers.length) {
    return { ok: false, problem: `--server-fingerprint: give one fingerprint for all servers, or one per server (${servers.length})` };
  }
  return {
    ok: true,
    value: servers.map(({ address, fingerprint }, i) => {
      const pinned = fingerprints?.[fingerprints.length === 1 ? 0 : i] ?? fingerprint;
      return {
        server: address,
        transport: clientTransport(spec, {
          ...(pinned !== undefined ? { fingerprint: pinned } : {}),
          ...(proxy?.ok ? { proxy: proxy.value } : {}),
          plaintext: options.plaintext === true,
        }),
      };
    }),
  };
}
