import type { Balance } from '../config/index.js';
import type { AppBinding, GoodbyeCode, LoginRejectCode, ProtocolErrorCode } from '../protocol/index.js';
import type { VhostRefusalCode } from '../vhost/index.js';

/** What happens on a commonserver, in the vocabulary of the sequence diagram. */
export type ServerEvent =
  | { type: 'listening'; address: string }
  | { type: 'group-registered'; group: string; apps: number }
  | { type: 'group-registration-failed'; file: string; reason: string }
  | { type: 'group-deregistered'; group: string }
  /** `changes`: each changed field the server uses, and when it applies ("apps.web.allow applies to the next user"). */
  | { type: 'group-updated'; group: string; apps: number; changes?: string[] }
  | { type: 'client-connected'; group: string; clientId: string; remote: string }
  | { type: 'login-rejected'; group?: string; remote: string; code: LoginRejectCode; reason: string }
  | { type: 'group-activated'; group: string; clientId: string; remote: string; apps: AppBinding[]; warnings: string[] }
  | { type: 'app-failed'; group: string; app: string; port: number; reason: string }
  /** An app one end will not serve: the server (its policy) or the host (outside its allowLocal:, in its AppsRefused). No public port. */
  | { type: 'app-refused'; group: string; app: string; port: number; by: 'server' | 'host'; reason: string }
  /** `domains` for a vhost app: the names it answers to on the shared vhost `port`. */
  | { type: 'app-opened'; group: string; app: string; port: number; domains?: string[] }
  | { type: 'vhost-listening'; kind: 'http' | 'https'; address: string }
  /**
   * A vhost user that reached no app: HTTP answered by the server itself (`code` the status:
   * 404 unknown name, 503 offline, 401, 408, 431...), HTTPS closed before routing (`code`
   * UNKNOWN_NAME, OFFLINE, NO_SNI, NOT_TLS, TIMEOUT...).
   */
  | { type: 'vhost-refused'; kind: 'http' | 'https'; remote: string; code: VhostRefusalCode; reason: string }
  | { type: 'app-closed'; group: string; app: string; reason: string }
  | { type: 'heartbeat'; group: string; seq: number }
  | { type: 'heartbeat-timeout'; group: string; silentMs: number }
  /** `visitor`: the user is a visitor of that group (a private app's user, through the visiting group's client). */
  | { type: 'user-conn-accepted'; group: string; app: string; remote: string; pairingId: string; visitor?: string }
  /** A Visit refused: `visitorGroup` (logged in) asked for `target` (group/app, as it named them). */
  | { type: 'visitor-refused'; visitorGroup: string; visitor: string; target: string; reason: string }
  | { type: 'user-conn-refused'; group: string; app: string; remote: string; reason: string }
  | { type: 'work-conn-requested'; group: string; app: string; pairingId: string }
  /** `mux`: on a new stream of the session's mux conn; `pooled`: on an idle pooled work conn. */
  | { type: 'work-conn-joined'; group: string; app: string; pairingId: string; waitedMs: number; pooled?: boolean; mux?: boolean }
  /** The session's mux conn came up, or was lost (its streams reset; asked for again). */
  | { type: 'mux-conn'; group: string; state: 'up' | 'lost'; reason?: string }
  /** A new single-use work conn is idle in the session's pool. */
  | { type: 'work-conn-pooled'; group: string; idle: number }
  | { type: 'work-conn-failed'; group: string; app: string; pairingId: string; reason: string }
  | {
      type: 'conn-closed';
      group: string;
      app: string;
      pairingId: string;
      bytesIn: number;
      bytesOut: number;
      durationMs: number;
      error?: string;
    }
  /** Bytes relayed for one app since its previous sample (live conns included). */
  | { type: 'traffic'; group: string; app: string; bytesIn: number; bytesOut: number; liveConns: number }
  /** A UDP app saw a new user address: a session, with its own mux stream or work conn, is opened for it. */
  /** `mux`: on a stream of the session's mux conn; `pooled`: on a pooled work conn; neither: on one asked for. */
  | { type: 'udp-session-opened'; group: string; app: string; peer: string; pairingId: string; pooled: boolean; mux?: boolean }
  | {
      type: 'udp-session-closed';
      group: string;
      app: string;
      peer: string;
      pairingId: string;
      reason: string;
      datagramsIn: number;
      datagramsOut: number;
      bytesIn: number;
      bytesOut: number;
      durationMs: number;
    }
  /** Datagrams a UDP app dropped since its previous sample, by reason (`oversize`, `sessionCap`, `notAllowed`, `backlog`). */
  | { type: 'udp-dropped'; group: string; app: string; dropped: Partial<Record<'oversize' | 'sessionCap' | 'notAllowed' | 'backlog', number>> }
  | { type: 'group-deactivated'; group: string; code: DeactivationCode; reason: string }
  /** A shared pool opened (its first member joined; port 0: a vhost pool, reached by name) or closed (its last one left). */
  | { type: 'pool-opened'; pool: string; port: number; balance: Balance }
  | { type: 'pool-closed'; pool: string; reason: string }
  | { type: 'pool-member-joined'; pool: string; group: string; app: string }
  | { type: 'pool-member-left'; pool: string; group: string; app: string; reason: string }
  /** A member's health changed, as its client's HealthReport said. */
  | { type: 'pool-member-health'; pool: string; group: string; app: string; healthy: boolean; reason: string }
  /** `retriedFrom`: the member that failed this user first (`reason`), before any byte of it was read. */
  | { type: 'pool-user-routed'; pool: string; group: string; app: string; remote: string; retriedFrom?: string; reason?: string }
  /** A user of the pool's port reset at once: no live, healthy member could take it. */
  | { type: 'pool-user-refused'; pool: string; remote: string; reason: string }
  | { type: 'bad-peer'; remote: string; code: BadPeerCode; reason: string }
  /** A source address crossed a failed-login threshold (`forMs`: how long it is refused). */
  | { type: 'login-throttled'; remote: string; state: 'slowed' | 'blocked'; failures: number; forMs?: number };

/** A group leaving inUseGroup by the client's own doing, not by a Goodbye we sent. */
export const DEPARTURE_CODES = ['CLIENT_LEFT', 'CONNECTION_LOST'] as const;
/** Why a group left inUseGroup: a Goodbye we sent, or the client's own departure. */
export type DeactivationCode = GoodbyeCode | (typeof DEPARTURE_CODES)[number];

/** A conn on the common port cut off for what it sent or failed to (PROTOCOL_ERROR: a control conn's reader failed otherwise). */
export const BAD_PEER_CODES = ['TLS_HANDSHAKE', 'TOO_MANY_HANDSHAKES', 'BAD_WORK_CONN', 'LOGIN_FAILED', 'PROTOCOL_ERROR'] as const;
export type BadPeerCode = ProtocolErrorCode | (typeof BAD_PEER_CODES)[number];

export type ServerEventType = ServerEvent['type'];
export type EmitServerEvent = (event: ServerEvent) => void;
