/**
 * Every message that crosses the common port, as one discriminated union.
 *
 * Control conn (client → server first):  Hello → Challenge → Login → LoginResp,
 * then Ping/Pong both ways, ReqWorkConn → (NewWorkConn on a fresh connection | WorkConnFailed),
 * and Goodbye from either side before a deliberate close.
 * Work conn: its first frame is NewWorkConn; everything after it is the user's raw bytes.
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

export interface WorkConnFailed {
  type: 'WorkConnFailed';
  pairingId: string;
  reason: string;
}

export type GoodbyeCode = 'TAKEN_OVER' | 'SHUTDOWN' | 'HEARTBEAT_TIMEOUT' | 'PROTOCOL_ERROR' | 'KICKED' | 'DEREGISTERED';

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
