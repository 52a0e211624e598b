/**
 * The life of one work conn on one side (server or client), as one explicit state machine.
 *
 * A work conn carries one user after another. Neither side ever sends a FIN on it while a
 * user is on it: each end of a user's streams travels as `WorkConnEnd {bytes}` on the common
 * conn, beside the relayed bytes. So the only clean way through is
 *
 *   idle ─start→ started ─(our outer conn's FIN, and the far end's stream delivered)→
 *   released ─(the far end is idle too)→ idle
 *
 * and everything else (an error, a reset or a bare FIN on either socket, a session that ended,
 * a deadline) is a fault: both sockets are reset, so that the program at either end sees
 * ECONNRESET, never a clean end of a stream that lost bytes. A work conn goes back to the pool
 * only from `released`, that is, when both of its streams ended cleanly on this side and the far
 * side said the same.
 */
export type WorkConnPhase = 'idle' | 'started' | 'released' | 'reset' | 'closed';

/** One direction of the current user's streams. */
export type StreamState = 'open' | 'ended';

export interface WorkConnState {
  readonly phase: WorkConnPhase;
  /** Our outer conn (the user here, or the local app) → the far end: `ended` once its FIN was reported. */
  readonly sent: StreamState;
  /** The far end → our outer conn: `ended` once its WorkConnEnd came and every byte before it was delivered. */
  readonly received: StreamState;
  /** The far end said this conn is idle on its side (WorkConnIdle), possibly before we were through. */
  readonly peerIdle: boolean;
  /** Why the conn was reset or closed. */
  readonly reason?: string;
}

export type WorkConnEvent =
  /** A user (or, on the client, a local app conn) is joined to the idle conn. */
  | { readonly type: 'start' }
  /** Our outer conn sent its FIN; the caller reports it to the far end as WorkConnEnd. */
  | { readonly type: 'outer-ended' }
  /** The far end's WorkConnEnd came and all the bytes it counted reached our outer conn. */
  | { readonly type: 'peer-ended' }
  /** The far end is through with this conn too (server side: the client's WorkConnIdle). */
  | { readonly type: 'peer-idle' }
  /** Anything abnormal: error, reset, a bare FIN, session lost, deadline, forced teardown. */
  | { readonly type: 'fault'; readonly reason: string }
  /** A conn with no user on it is closed in order (pool full, session over). */
  | { readonly type: 'close'; readonly reason: string };

export const IDLE_WORK_CONN: WorkConnState = Object.freeze({ phase: 'idle', sent: 'open', received: 'open', peerIdle: false });

/** Whether the machine has stopped: the work conn is gone either way. */
export function isFinal(state: WorkConnState): boolean {
  return state.phase === 'reset' || state.phase === 'closed';
}

/**
 * The next state. Pure and total: an event that makes no sense in a phase (a close while a
 * user is on the conn, an end before any start) is a fault, never silently taken as clean.
 * A final state stays as it is; so do repeated ends (a peer repeating itself changes nothing).
 */
export function nextWorkConnState(state: WorkConnState, event: WorkConnEvent): WorkConnState {
  if (isFinal(state)) return state;
  switch (event.type) {
    case 'fault':
      return { ...state, phase: 'reset', reason: event.reason };
    case 'close':
      if (state.phase === 'started') return { ...state, phase: 'reset', reason: `${event.reason} while a user was on the work conn` };
      return { ...state, phase: 'closed', reason: event.reason };
    case 'start':
      if (state.phase !== 'idle') return fault(state, `a user was joined to a work conn that is ${state.phase}`);
      return { phase: 'started', sent: 'open', received: 'open', peerIdle: false };
    case 'outer-ended':
      if (state.phase !== 'started') return fault(state, `an outer end on a work conn that is ${state.phase}`);
      return settle({ ...state, sent: 'ended' });
    case 'peer-ended':
      if (state.phase !== 'started') return fault(state, `the far end's end on a work conn that is ${state.phase}`);
      return settle({ ...state, received: 'ended' });
    case 'peer-idle':
      // Idle on the far side before both ends are through here is possible (it only waits for
      // its own side), and harmless: it is kept until this side is through.
      if (state.phase === 'idle') return state;
      return settle({ ...state, peerIdle: true });
    default:
      return assertNeverEvent(event);
  }
}

/** Both ends through: released, and idle again once the far end is too. */
function settle(state: WorkConnState): WorkConnState {
  if (state.sent !== 'ended' || state.received !== 'ended') return state;
  return state.peerIdle ? IDLE_WORK_CONN : { ...state, phase: 'released' };
}

function fault(state: WorkConnState, reason: string): WorkConnState {
  return { ...state, phase: 'reset', reason };
}

function assertNeverEvent(event: never): never {
  throw new Error(`unknown work conn event ${JSON.stringify(event)}`);
}

/**
 * Holds one work conn's state and tells its owner of each change. The relay fires the events
 * of the user's streams; the owner (the AppGroup or the ClientSession) fires the session's.
 */
export class WorkConnTracker {
  private current: WorkConnState = IDLE_WORK_CONN;

  constructor(private readonly onChange: (state: WorkConnState, previous: WorkConnState) => void = () => {}) {}

  get state(): WorkConnState {
    return this.current;
  }

  fire(event: WorkConnEvent): WorkConnState {
    const previous = this.current;
    this.current = nextWorkConnState(previous, event);
    if (this.current !== previous) this.onChange(this.current, previous);
    return this.current;
  }
}
