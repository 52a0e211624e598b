import type { AppBinding, GoodbyeCode, LoginRejectCode } from '../protocol/index.js';

/** What happens on a groupclient, in the vocabulary of the sequence diagram. */
export type ClientEvent =
  | { type: 'connecting'; server: string; attempt: number }
  | { type: 'login-accepted'; server: string; apps: AppBinding[]; warnings: string[] }
  /** `tryingNext`: a cluster's server refused for itself only (its view, its config): the next server is tried at once. */
  | { type: 'login-rejected'; server: string; code: LoginRejectCode; reason: string; willRetry: boolean; tryingNext?: boolean }
  /** `next`: another server of the cluster, tried at once (no backoff: the round is not over). */
  | { type: 'connect-failed'; server: string; attempt: number; reason: string; retryInMs: number; next?: string }
  /** `retryInMs`: the delay before the next login (0: at once, the session had lived a while). */
  | { type: 'session-lost'; code?: GoodbyeCode; reason: string; retryInMs: number }
  /** The server answered a Ping. */
  | { type: 'heartbeat'; seq: number }
  | { type: 'heartbeat-timeout'; silentMs: number }
  /** `mux`: a stream opened on the mux conn; `pooled`: StartWorkConn on a pooled work conn; otherwise ReqWorkConn on the common conn. */
  | { type: 'work-conn-requested'; app: string; pairingId: string; pooled: boolean; mux?: boolean }
  | { type: 'local-dial-failed'; app: string; target: string; reason: string }
  /** The server asked for `count` pooled work conns, opened now and idle until users come. */
  | { type: 'pool-requested'; count: number }
  /**
   * The server asked for `asked` pooled work conns where only `opened` fit under `cap` (those
   * being opened or idle): the rest were not opened. `trimmedInSession` counts them all.
   */
  | { type: 'pool-trimmed'; asked: number; opened: number; cap: number; trimmedInSession: number }
  /** The server opened a user on the mux conn while `cap` were open (`--max-mux-streams`): refused with an RST. */
  | { type: 'mux-stream-refused'; cap: number; refusedOnConn: number }
  | { type: 'work-conn-opened'; app: string; pairingId: string; pooled: boolean; mux?: boolean }
  | { type: 'conn-closed'; app: string; bytesIn: number; bytesOut: number; durationMs: number; error?: string }
  /** A UDP session got its local socket and its channel (`mux`: a stream of the mux conn). */
  | { type: 'udp-session-opened'; app: string; pairingId: string; pooled: boolean; mux?: boolean }
  /** `reason` `end`: the server closed it (idle timeout, app removed); `dropped`: datagrams this end could not pass on. */
  | { type: 'udp-session-closed'; app: string; pairingId: string; reason: string; datagramsIn: number; datagramsOut: number; dropped: number }
  /** `changes`: each changed field the client uses, and when it applies; `warnings`: apps of the file that differ from the server's list, which stays in force. */
  | { type: 'spec-reloaded'; apps: string[]; changes?: string[]; warnings?: string[] }
  /** `fatal`: stopped by a failure (a refused login, no server that will have it), not on request. */
  | { type: 'stopped'; reason: string; fatal: boolean }
  /** A pooled app's health checks crossed a threshold: reported to the server (HealthReport). */
  | { type: 'health-changed'; app: string; healthy: boolean; reason: string }
  /** The server sent the group's apps (GroupApps): those served now with their local targets; `warnings`: the host file's entries it overrides. */
  | { type: 'apps-received'; apps: { name: string; target: string }[]; warnings: string[] }
  /** An app from the server whose local target this host does not allow: never dialed, reported to the server. */
  | { type: 'app-refused'; app: string; target: string; reason: string }
  /** A visitor listens on `bind` (its users reach `target`, group/app, through the server). */
  | { type: 'visitor-listening'; visitor: string; target: string; bind: string; protocol: 'tcp' | 'udp' }
  /** A visitor could not listen: its users cannot come (the other visitors and apps go on). */
  | { type: 'visitor-failed'; visitor: string; bind: string; reason: string }
  /** A user of one of our visitors was reset: `byServer`, the server refused the visit (its words); else this end could not ask. */
  | { type: 'visitor-refused'; visitor: string; group: string; app: string; reason: string; byServer: boolean }
  /** A user of one of our visitors ended (its bytes to and from the app). */
  | { type: 'visitor-conn-closed'; visitor: string; bytesIn: number; bytesOut: number; durationMs: number; error?: string }
  /** Owner side: the server refused `visitorGroup`'s visitor of our private `app`, and why. */
  | { type: 'visit-refused'; visitorGroup: string; visitor: string; app: string; reason: string }
  /** Owner side: a visitor of `visitorGroup` is a user of our private `app` (a stream, served like any user). */
  | { type: 'visitor-arrived'; app: string; visitorGroup: string; pairingId: string }
  /** The server's registry changed this group while live; `unknown`: opened apps missing from our file. */
  | { type: 'apps-changed'; opened: AppBinding[]; closed: string[]; unknown: string[] };

export type EmitClientEvent = (event: ClientEvent) => void;
