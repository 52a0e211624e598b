/**
 * Every message that crosses the common port, as one discriminated union.
 *
 * Control conn (client → server first):  Hello → Challenge → Login → LoginResp,
 * then Ping/Pong both ways, ReqWorkConn → (NewWorkConn on a fresh connection | WorkConnFailed),
 * ReqPooledWorkConns → NewWorkConn on fresh connections that wait idle in the server's pool,
 * and Goodbye from either side before a deliberate close.
 * Work conn: its first frame is NewWorkConn; everything after it is the user's raw bytes.
 * A pooled work conn: NewWorkConn, then (once a user arrives) StartWorkConn from the server,
 * then the user's raw bytes. It is never half-closed: each side reports its end of the user's
 * stream as WorkConnEnd on the control conn, and once both are through (WorkConnIdle from the
 * client) it waits for the next StartWorkConn.
 *
 * The diagram in `diagrams/sequence.md` names exactly these types; a test keeps both in step.
 */

export const PROTOCOL_VERSION = 1;

/** An app as the server publishes it after activation. */
export interface AppBinding {
  name: string;
  remotePort: number;
  /** `listening` once the public port is bound; `failed` with a reason otherwise. */
  state: 'listening' | 'failed';
  error?: string;
  /** A vhost app: the host names it answers to on `remotePort` (the server's vhost port). */
  domains?: string[];
}

/** An app as the client's own group file declares it (local target never leaves the host). */
export interface AppDeclaration {
  name: string;
  remotePort: number;
}

export interface Hello {
  type: 'Hello';
  version: number;
  group: string;
  /** Stable across restarts of the same agent: lets a restarted client take its group over. */
  clientId: string;
}

export interface Challenge {
  type: 'Challenge';
  /** Server-issued, used once: the login proof is an HMAC over it. */
  nonce: string;
}

export interface Login {
  type: 'Login';
  /** HMAC-SHA256(secret, "login" | nonce | group | clientId), hex. */
  proof: string;
  /** What the client's group file says, so the server can report mismatches. */
  apps: AppDeclaration[];
}

export type LoginRejectCode =
  | 'UNKNOWN_GROUP'
  | 'BAD_SECRET'
  | 'GROUP_IN_USE'
  | 'VERSION_MISMATCH'
  | 'RATE_LIMITED'
  | 'POLICY';

export interface LoginResp {
  type: 'LoginResp';
  /** Absent when rejected. */
  sessionId?: string;
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  apps?: AppBinding[];
  /** Differences between the server's registry and the client's group file, in words. */
  warnings?: string[];
  error?: { code: LoginRejectCode; reason: string };
}

export interface Ping {
  type: 'Ping';
  seq: number;
}

export interface Pong {
  type: 'Pong';
  seq: number;
}

export interface ReqWorkConn {
  type: 'ReqWorkConn';
  app: string;
  /** One-time, unguessable; valid for exactly one held user connection of this session. */
  pairingId: string;
}

export interface NewWorkConn {
  type: 'NewWorkConn';
  sessionId: string;
  pairingId: string;
  /** HMAC-SHA256(secret, "join" | sessionId | pairingId), hex: a pairing id alone is not enough. */
  proof: string;
}

/**
 * Server → client on the common conn: open one work conn per id now, for the pool. The client
 * dials only the server (never the local app: a server-speaks-first app must not be connected
 * before its user exists) and presents each id in NewWorkConn, like a ReqWorkConn's.
 */
export interface ReqPooledWorkConns {
  type: 'ReqPooledWorkConns';
  /** One-time, unguessable, issued by the server; each binds one pooled work conn. */
  pairingIds: string[];
}

/**
 * Server → client on an idle pooled work conn: a user of `app` was joined to this conn. The
 * client dials the local app and relays; if it cannot, it closes this conn (the user is closed
 * at once) and reports WorkConnFailed with `pairingId` on the common conn.
 */
export interface StartWorkConn {
  type: 'StartWorkConn';
  app: string;
  /** Names this user for WorkConnFailed and the logs; not a credential. */
  pairingId: string;
}

/**
 * Server → client on the common conn, after the registry changed a live group (a hot reload of
 * its file): the apps opened (with their public ports, or why they failed) and the apps closed.
 * The client only reports it: its local targets still come from its own group file.
 */
export interface AppsChanged {
  type: 'AppsChanged';
  opened: AppBinding[];
  closed: string[];
}

/**
 * Either way on the common conn, for a user on a pooled work conn: the stream this side relays
 * into the work conn ended (the user's or the local app's FIN) after `bytes` bytes. Instead of
 * a FIN on the work conn, which would end it for good; the receiver ends its own socket once
 * exactly that many bytes have arrived, so no marker is needed inside the relayed bytes.
 */
export interface WorkConnEnd {
  type: 'WorkConnEnd';
  pairingId: string;
  bytes: number;
}

/**
 * Client → server on the common conn: both ends of `pairingId`'s stream are through on the
 * client, and its work conn waits for a StartWorkConn again. The server puts it back in the
 * pool once its own side is through too.
 */
export interface WorkConnIdle {
  type: 'WorkConnIdle';
  pairingId: string;
}

export interface WorkConnFailed {
  type: 'WorkConnFailed';
  pairingId: string;
  reason: string;
}

/**
 * `SLOW_PEER`: the peer stopped reading its control conn (too much queued for it, or nothing
 * taken for the heartbeat timeout). Such a peer cannot read a Goodbye either: it is reset, and
 * the code names the cause in the events of the side that cut it off.
 */
export type GoodbyeCode = 'TAKEN_OVER' | 'SHUTDOWN' | 'HEARTBEAT_TIMEOUT' | 'PROTOCOL_ERROR' | 'KICKED' | 'DEREGISTERED' | 'SLOW_PEER' | 'SECRET_CHANGED';

export interface Goodbye {
  type: 'Goodbye';
  code: GoodbyeCode;
  reason: string;
}

export type Message =
  | Hello
  | Challenge
  | Login
  | LoginResp
  | Ping
  | Pong
  | ReqWorkConn
  | NewWorkConn
  | ReqPooledWorkConns
  | StartWorkConn
  | WorkConnEnd
  | WorkConnIdle
  | AppsChanged
  | WorkConnFailed
  | Goodbye;

export type MessageType = Message['type'];

/** Kept as a value so tests (and the diagram check) can enumerate the union. */
export const MESSAGE_TYPES = [
  'Hello',
  'Challenge',
  'Login',
  'LoginResp',
  'Ping',
  'Pong',
  'ReqWorkConn',
  'NewWorkConn',
  'ReqPooledWorkConns',
  'StartWorkConn',
  'WorkConnEnd',
  'WorkConnIdle',
  'AppsChanged',
  'WorkConnFailed',
  'Goodbye',
] as const satisfies readonly MessageType[];

// Compile-time check that MESSAGE_TYPES lists every member of the union.
type Missing = Exclude<MessageType, (typeof MESSAGE_TYPES)[number]>;
const everyTypeListed: Missing extends never ? true : Missing = true;
void everyTypeListed;

export function assertNever(value: never, what = 'value'): never {
  throw new Error(`unexpected ${what}: ${JSON.stringify(value)}`);
}
