import type { GoodbyeCode } from '../protocol/index.js';
import { ClusterRefusedError, type ServerRefusal } from './errors.js';

/**
 * The client's login attempts over its servers since its last login: a round is each server
 * tried once, and a whole round failing is one failure for the backoff. Ends the run when
 * every server of a round refused for good for one reason.
 */
export class LoginRound {
  /** Logins tried since the last one accepted (the number each connecting line shows). */
  attempt = 0;
  /** Servers that failed in a row. */
  private failedInRound = 0;
  /** What each server of this round refused for good, when it did. */
  private refusals = new Map<string, ServerRefusal>();
  /** The last failure closed a round. */
  over = false;

  constructor(private readonly servers: number) {}

  nextAttempt(): number {
    return ++this.attempt;
  }

  /** One server failed (`refusal`: for good, for itself); returns the verdict that ends the run, if the round is unanimous. */
  failed(refusal: ServerRefusal | undefined): ClusterRefusedError | undefined {
    if (refusal !== undefined) this.refusals.set(refusal.server, refusal);
    this.failedInRound += 1;
    this.over = this.failedInRound >= this.servers;
    if (!this.over) return undefined;
    const verdict = unanimous(this.refusals, this.servers);
    this.failedInRound = 0;
    this.refusals = new Map();
    return verdict;
  }

  loggedIn(): void {
    this.failedInRound = 0;
    this.refusals = new Map();
    this.attempt = 0;
    this.over = false;
  }
}

/** A login failed; `next`: the server of the round tried at once (none: the round is over, the backoff waits). */
export class ConnectFailed extends Error {
  override readonly name = 'ConnectFailed';
  constructor(
    readonly server: string,
    readonly attempt: number,
    cause: Error,
    readonly next: string | undefined,
  ) {
    super(cause.message, { cause });
  }
}

/** A session ended before it lived long enough to reset the backoff: one more failure. */
export class SessionLost extends Error {
  override readonly name = 'SessionLost';
  constructor(
    reason: string,
    readonly code: GoodbyeCode | undefined,
  ) {
    super(reason);
  }
}

/** Every server of the round refused for good, and all for one reason: the error that ends the run. */
function unanimous(refusals: Map<string, ServerRefusal>, servers: number): ClusterRefusedError | undefined {
  const all = [...refusals.values()];
  const code = all[0]?.code;
  if (code === undefined || all.length < servers || all.some((refusal) => refusal.code !== code)) return undefined;
  return new ClusterRefusedError(code, all);
}
