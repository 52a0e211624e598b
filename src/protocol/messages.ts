import { z } from 'zod';
import { ProtocolError } from './errors.js';

/**
 * Every message that crosses the common port, one schema each, as one discriminated union.
 * The TypeScript types, the codec's validation and the list of message types all come from
 * the schemas below: there is no second list to keep in step.
 *
 * Control conn (client → server first):  Hello → Challenge → Login → LoginResp,
 * then Ping/Pong both ways, ReqMuxConn → NewWorkConn on the session's mux conn,
 * ReqWorkConn → (NewWorkConn on a fresh connection | WorkConnFailed),
 * ReqPooledWorkConns → NewWorkConn on fresh connections that wait idle in the server's pool,
 * HealthReport from the client when a pooled app's health changes,
 * GroupApps from the server after LoginResp and each registry change, answered by AppsRefused,
 * and Goodbye from either side before a deliberate close.
 * Mux conn: NewWorkConn, then mux frames (`mux-codec.ts`): each user (a TCP user, or a UDP
 * session) is a stream the server opens with a StartWorkConn.
 * Work conn: single-use. Its first frame is NewWorkConn; a pooled one then waits for a
 * StartWorkConn. Everything after is one user's raw bytes (FIN and reset as on a socket), or,
 * for a UDP app (`protocol: 'udp'` in ReqWorkConn / StartWorkConn), one session's datagrams,
 * each in a frame of its own (`datagram-codec.ts`); then the conn is closed.
 *
 * Adding a message: write its schema as `z.object({ type: z.literal('X'), ... })` with bounded
 * strings and lists (a peer controls every field), add it to `MESSAGE_SCHEMAS`, handle it in
 * each role's `switch (msg.type)` (the compiler points at them), and draw it in
 * `diagrams/sequence.md` (a test checks the diagram names exactly these types). Extra fields
 * a peer sends are dropped, so an older peer ignores what a newer one adds.
 */

/**
 * 2: work conns are single-use (WorkConnEnd and WorkConnIdle are gone) and UDP sessions travel
 * on the mux conn; a peer of version 1 is told to update at its Hello.
 */
export const PROTOCOL_VERSION = 2;

/** Names and ids: group, app, client, session and pairing ids. */
const id = z.string().max(128);
/** HMAC proofs and nonces (hex or base64). */
const token = z.string().max(256);
/** Human-readable reasons and warnings. */
const text = z.string().max(1024);
/** Counters and sequence numbers: JSON numbers that stay exact. */
const count = z.int().min(0);
const port = z.int().min(0).max(65535);
/** No list on the wire is longer: a peer cannot make us walk a huge array. */
const MAX_LIST = 1024;
const list = <T extends z.ZodType>(item: T) => z.array(item).max(MAX_LIST);
/**
 * `udp` marks a message about a UDP app; absent, it is about TCP, as before UDP apps existed.
 * Any other value is refused rather than taken for TCP.
 */
const protocolMark = z.literal('udp').optional();

/** An app as the server publishes it after activation. */
const appBinding = z.object({
  name: id,
  remotePort: port,
  /** `listening` once the public port is bound; `failed` with a reason otherwise. */
  state: z.enum(['listening', 'failed']),
  error: text.optional(),
  protocol: protocolMark,
  /** A vhost app: the host names it answers to on `remotePort` (the server's vhost port). */
  domains: list(z.string().max(253)).optional(),
  /** A private app: no public port (`remotePort` 0); only visitors of the groups it allows reach it. */
  visibility: z.literal('private').optional(),
});
export type AppBinding = z.infer<typeof appBinding>;

/** An app as the client's own group file declares it (local target never leaves the host). */
const appDeclaration = z.object({
  name: id,
  remotePort: port,
  protocol: protocolMark,
  /** The header the client writes to this local app, if any (it decides; the server only compares). */
  proxyProtocol: z.enum(['v1', 'v2']).optional(),
});
export type AppDeclaration = z.infer<typeof appDeclaration>;

/**
 * A pooled app's health check as the server's registry says it: the client runs it against the
 * local target. Bounded like the group file's, so a server cannot make the host probe in a loop.
 */
const healthCheckTarget = z.object({
  type: z.enum(['tcp', 'http']),
  path: z
    .string()
    .max(1024)
    .regex(/^\/[\x21-\x7e]*$/)
    .optional(),
  intervalMs: z.int().min(100).max(86_400_000),
  timeoutMs: z.int().min(1).max(86_400_000),
  failures: z.int().min(1).max(100),
  successes: z.int().min(1).max(100),
});

/**
 * An app as the server's registry says it, with what the client needs to serve it: its local
 * target, which the client dials only if the host's `allowLocal:` allows it.
 */
const appTarget = z.object({
  name: id,
  local: z.object({ host: z.string().min(1).max(253), port: z.int().min(1).max(65535) }),
  /** Absent: tcp. */
  type: z.enum(['udp', 'http', 'https']).optional(),
  remotePort: port,
  proxyProtocol: z.enum(['v1', 'v2']).optional(),
  pool: id.optional(),
  healthCheck: healthCheckTarget.optional(),
});
export type AppTarget = z.infer<typeof appTarget>;

const hello = z.object({
  type: z.literal('Hello'),
  version: count,
  group: id,
  /** Stable across restarts of the same agent: lets a restarted client take its group over. */
  clientId: id,
});

/** Server-issued, used once: the login proof is an HMAC over `nonce`. */
const challenge = z.object({ type: z.literal('Challenge'), nonce: token });

const login = z.object({
  type: z.literal('Login'),
  /** HMAC-SHA256(secret, "login" | nonce | group | clientId), hex. */
  proof: token,
  /** What the client's group file says, so the server can report mismatches. */
  apps: list(appDeclaration),
  /** The client can carry its users (TCP and UDP) as streams of one mux conn (ReqMuxConn); absent: it cannot. */
  mux: z.boolean().optional(),
  /** The client takes its apps from the server (GroupApps) and answers AppsRefused; absent: an older client. */
  takesApps: z.boolean().optional(),
});

/**
 * Cluster nodes add two: GROUP_ACTIVE_ELSEWHERE (the group is active on another node, the
 * reason names it) and NODE_UNAVAILABLE (this node holds no etcd lease now); a client with
 * several servers tries the next one at once.
 */
const loginRejectCode = z.enum([
  'UNKNOWN_GROUP',
  'BAD_SECRET',
  'GROUP_IN_USE',
  'VERSION_MISMATCH',
  'RATE_LIMITED',
  'POLICY',
  'GROUP_ACTIVE_ELSEWHERE',
  'NODE_UNAVAILABLE',
]);
export type LoginRejectCode = z.infer<typeof loginRejectCode>;
export const LOGIN_REJECT_CODES: readonly LoginRejectCode[] = loginRejectCode.options;

/** Accepted: session, heartbeat and apps; rejected: only `error`. */
const loginResp = z
  .object({
    type: z.literal('LoginResp'),
    sessionId: id.optional(),
    heartbeatIntervalMs: count.optional(),
    heartbeatTimeoutMs: count.optional(),
    apps: list(appBinding).optional(),
    /** Differences between the server's registry and the client's group file, in words. */
    warnings: list(text).optional(),
    /** Both ends carry users on a mux conn: the server sends ReqMuxConn next. */
    mux: z.boolean().optional(),
    error: z.object({ code: loginRejectCode, reason: text }).optional(),
  })
  .superRefine((resp, ctx) => {
    if (resp.error !== undefined) return;
    for (const field of ['sessionId', 'heartbeatIntervalMs', 'heartbeatTimeoutMs', 'apps'] as const) {
      if (resp[field] === undefined) ctx.addIssue({ code: 'custom', path: [field], message: 'required when the login is accepted (no error)' });
    }
  });

const ping = z.object({ type: z.literal('Ping'), seq: count });
const pong = z.object({ type: z.literal('Pong'), seq: count });

/**
 * A user conn's two ends as the server's socket sees them: the user's address and port, and the
 * public address and port it reached. The client writes them in a PROXY protocol header when the
 * app asks for one; it never dials them. Only the shape is checked here: the client puts nothing
 * but an IP address in a header.
 */
const userAddress = z.object({ remoteAddress: z.string().max(64), remotePort: port, localAddress: z.string().max(64), localPort: port });
export type UserAddress = z.infer<typeof userAddress>;

const reqWorkConn = z.object({
  type: z.literal('ReqWorkConn'),
  app: id,
  /** One-time, unguessable; valid for exactly one held user connection of this session. */
  pairingId: id,
  /** `udp`: the work conn carries one UDP session's datagrams; the client opens a local UDP socket. */
  protocol: protocolMark,
  /** Absent when the server no longer knew it (the user's socket closed as it was accepted). */
  user: userAddress.optional(),
});

const newWorkConn = z.object({
  type: z.literal('NewWorkConn'),
  sessionId: id,
  pairingId: id,
  /** HMAC-SHA256(secret, "join" | sessionId | pairingId), hex: a pairing id alone is not enough. */
  proof: token,
});

/**
 * Server → client on the common conn: open one work conn per id now, for the pool. The client
 * dials only the server (never the local app: a server-speaks-first app must not be connected
 * before its user exists) and presents each id in NewWorkConn, like a ReqWorkConn's.
 */
const reqPooledWorkConns = z.object({
  type: z.literal('ReqPooledWorkConns'),
  /** One-time, unguessable, issued by the server; each binds one pooled work conn. */
  pairingIds: list(id),
});

/**
 * Server → client on the common conn, once after LoginResp {mux: true} (and again after a lost
 * one): open the session's mux conn now and present `pairingId` in its NewWorkConn. After that
 * frame the conn carries mux frames (`mux-codec.ts`): each user (TCP, or a UDP session) is a
 * stream opened by the server with a StartWorkConn.
 */
const reqMuxConn = z.object({ type: z.literal('ReqMuxConn'), pairingId: id });

/**
 * Server → client on an idle pooled work conn, or in a mux stream's OPEN: a user of `app` is on
 * this conn or stream. The client dials the local app and relays; if it cannot, it resets the
 * conn (reporting WorkConnFailed with `pairingId` on the common conn) or the stream (its RST
 * says why), and the user is reset at once.
 */
const startWorkConn = z.object({
  type: z.literal('StartWorkConn'),
  app: id,
  /** Names this user for WorkConnFailed and the logs; not a credential. */
  pairingId: id,
  /** `udp`: datagram frames follow, for one UDP session (one user address). */
  protocol: protocolMark,
  /** As in ReqWorkConn. */
  user: userAddress.optional(),
  /** The user is a visitor of this group (named): the client's events and logs say so. */
  visitor: id.optional(),
  /**
   * To a visiting client only: the stream carries the private app its Visit of id `pairingId`
   * asked for, and `app` is that visitor's name. Its local user is relayed on it.
   */
  visit: z.literal(true).optional(),
});

/**
 * Client → server on the common conn: a user (TCP) or a new source address (UDP) came to one
 * of this host's visitors; it asks for `group`'s private `app`. The server checks the owner's
 * registry (the app is private, this group is in its allowVisitors, the proof if it has a
 * visitorSecret), then opens a mux stream to this client (StartWorkConn `visit`, `pairingId` =
 * `visitId`) joined to a stream to the owner's client, as for a public user; or it answers
 * VisitRefused. Only the server ever opens streams: a direct path could later be offered here.
 */
const visit = z.object({
  type: z.literal('Visit'),
  /** Chosen by the visiting client; names this visit in its stream's OPEN or its VisitRefused. */
  visitId: id,
  /** The visitor's name in this host's file (for the logs of both hosts). */
  visitor: id,
  group: id,
  app: id,
  protocol: protocolMark,
  /** With a visitorSecret: HMAC-SHA256(secret, "visit" | visitor's group | group | app | visitId), hex. */
  proof: token.optional(),
});

/**
 * Server → client on the common conn: a Visit was refused, with why. To the visitor's client
 * with its `visitId` (its local user is reset); to the owner's client without one, as a notice
 * (sent at a bounded rate). `visitorGroup` and `visitor` name who tried.
 */
const visitRefused = z.object({
  type: z.literal('VisitRefused'),
  visitId: id.optional(),
  visitorGroup: id,
  visitor: id,
  group: id,
  app: id,
  reason: text,
});

/**
 * Server → client on the common conn, after the registry changed a live group (a hot reload of
 * its file): the apps opened (with their public ports, or why they failed) and the apps closed.
 * The client only reports it: its local targets still come from its own group file.
 */
const appsChanged = z.object({ type: z.literal('AppsChanged'), opened: list(appBinding), closed: list(id) });

/**
 * Server → client on the common conn, right after LoginResp and again after each change of the
 * group's registry entry while it is live (to a client whose Login said `takesApps`): every app
 * of the group with its local target. The client serves these instead of its own file's, each
 * only if its host's `allowLocal:` allows the target, and answers AppsRefused for the others.
 */
const groupApps = z.object({ type: z.literal('GroupApps'), apps: list(appTarget) });

/**
 * Client → server on the common conn, after each GroupApps: the apps the host will not serve and
 * why (outside its `allowLocal:`). The server closes their public ports and shows them as
 * "refused by host: REASON"; an empty list clears the earlier refusals.
 */
const appsRefused = z.object({ type: z.literal('AppsRefused'), apps: list(z.object({ name: id, reason: text })) });

const workConnFailed = z.object({ type: z.literal('WorkConnFailed'), pairingId: id, reason: text });

/**
 * Client → server on the common conn: a pooled app's local target passed (`healthy`) or failed
 * its health checks the number of times in a row its group file asks for. Sent on each change;
 * a new session starts healthy. The server takes it only for apps of this group that are
 * pooled in its own registry. `reason`: the last check's outcome in words.
 */
const healthReport = z.object({ type: z.literal('HealthReport'), app: id, healthy: z.boolean(), reason: text });

/**
 * `SLOW_PEER`: the peer stopped reading its control conn (too much queued for it, or nothing
 * taken for the heartbeat timeout). Such a peer cannot read a Goodbye either: it is reset, and
 * the code names the cause in the events of the side that cut it off.
 */
const goodbyeCode = z.enum([
  'TAKEN_OVER',
  'SHUTDOWN',
  'HEARTBEAT_TIMEOUT',
  'PROTOCOL_ERROR',
  'KICKED',
  'DEREGISTERED',
  'SLOW_PEER',
  'SECRET_CHANGED',
  'LEASE_LOST',
]);
export type GoodbyeCode = z.infer<typeof goodbyeCode>;
export const GOODBYE_CODES: readonly GoodbyeCode[] = goodbyeCode.options;

const goodbye = z.object({ type: z.literal('Goodbye'), code: goodbyeCode, reason: text });

/** The one list of wire messages: the union, MESSAGE_TYPES and the diagram check read it. */
const MESSAGE_SCHEMAS = [
  hello,
  challenge,
  login,
  loginResp,
  ping,
  pong,
  reqWorkConn,
  newWorkConn,
  reqPooledWorkConns,
  reqMuxConn,
  startWorkConn,
  appsChanged,
  groupApps,
  appsRefused,
  workConnFailed,
  healthReport,
  goodbye,
  visit,
  visitRefused,
] as const;

export const messageSchema = z.discriminatedUnion('type', MESSAGE_SCHEMAS);

export type Message = z.infer<typeof messageSchema>;
export type MessageType = Message['type'];
type Of<T extends MessageType> = Extract<Message, { type: T }>;
export type Hello = Of<'Hello'>;
export type Login = Of<'Login'>;
export type LoginResp = Of<'LoginResp'>;
export type NewWorkConn = Of<'NewWorkConn'>;
export type StartWorkConn = Of<'StartWorkConn'>;
export type HealthReport = Of<'HealthReport'>;
export type AppsRefused = Of<'AppsRefused'>;
export type Visit = Of<'Visit'>;
export type VisitRefused = Of<'VisitRefused'>;

/** Every message type, in the order of MESSAGE_SCHEMAS (tests and the diagram check enumerate it). */
export const MESSAGE_TYPES: readonly MessageType[] = Object.freeze(MESSAGE_SCHEMAS.map((schema) => schema.shape.type.value));

/**
 * Narrows parsed JSON to a Message. Anything a peer sends is `unknown` until it passes here;
 * extra fields are dropped, a missing or mistyped one is a BAD_MESSAGE naming the field.
 */
export function validateMessage(value: unknown): Message {
  const result = messageSchema.safeParse(value);
  if (result.success) return result.data;
  throw new ProtocolError('BAD_MESSAGE', describeIssue(value, result.error.issues[0]!));
}

function describeIssue(value: unknown, issue: z.core.$ZodIssue): string {
  const type = typeof value === 'object' && value !== null ? (value as { type?: unknown }).type : undefined;
  if (issue.path.length === 1 && issue.path[0] === 'type') return `unknown message type ${JSON.stringify(type)?.slice(0, 40) ?? 'undefined'}`;
  if (issue.path.length === 0) return `a message must be an object with a known type: ${issue.message}`;
  return `${String(type)}.${issue.path.map(String).join('.')}: ${issue.message}`;
}

export function assertNever(value: never, what = 'value'): never {
  throw new Error(`unexpected ${what}: ${JSON.stringify(value)}`);
}
