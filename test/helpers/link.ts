import type { Socket } from 'node:net';
import { dialCommon } from '../../src/client/index.js';
import { PLAINTEXT, type ClientTransport } from '../../src/net/index.js';

/**
 * The two links a common port can speak. TLS with a pinned fingerprint is the default;
 * `plaintext` is the explicit variant that relay and pool tests also run.
 */
export const LINKS = ['tls', 'plaintext'] as const;
export type Link = (typeof LINKS)[number];

/**
 * How a client reaches a started server: its port, and the fingerprint of its certificate
 * when TLS is on (what startServer and startCommonServerProcess return). A relay in front of
 * the server is `{ ...started, port: relay.port }`: TLS passes through it untouched.
 */
export interface ServerLink {
  port: number;
  fingerprint?: string;
}

/** The in-process client's transport for `server`: pinned TLS, or plaintext when the server has no certificate. */
export function clientTransportFor(server: ServerLink): ClientTransport {
  return server.fingerprint === undefined ? PLAINTEXT : { kind: 'tls', fingerprint: server.fingerprint };
}

/** The groupclient CLI's arguments for `server`: `--server-fingerprint`, or `--plaintext` when the server has no certificate. */
export function linkArgs(server: ServerLink): string[] {
  return server.fingerprint === undefined ? ['--plaintext'] : ['--server-fingerprint', server.fingerprint];
}

/**
 * A raw connection to the common port of `server` for a hand-driven peer, through the same
 * dial as the real client: TLS pinned to its fingerprint, plain TCP when it has none.
 */
export function dialServer(server: ServerLink): Promise<Socket> {
  return dialCommon({ host: '127.0.0.1', port: server.port }, clientTransportFor(server), 5000);
}
