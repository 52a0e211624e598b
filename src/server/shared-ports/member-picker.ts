import type { Balance } from '../../config/index.js';

/** What selection needs to know of a pool member. */
export interface PickCandidate {
  /** UserConns the member holds now, waiting or relayed (what least_conn compares). */
  readonly openConns: number;
}

/**
 * Chooses the member of a pool that gets the next user, among those `eligible` says may take
 * one (live and healthy, not at their own connection cap). Members are given in join order.
 *
 * - `round_robin`: the next eligible member after the one picked last, so users are spread
 *   evenly even when some members are skipped for a while.
 * - `least_conn`: the eligible member with the fewest open conns; ties go in round-robin
 *   order, so an idle pool still takes turns instead of filling its first member.
 *
 * Pure and synchronous: a vhost route or a TCP pool can share it.
 */
export class MemberPicker {
  /** Index (in the members list) of the member picked last. */
  private last = -1;

  constructor(private readonly balance: Balance) {}

  /**
   * `advance: false` leaves the turn where it was (a retry after a member failed a user):
   * otherwise the member that failed would get the next user first, every time.
   */
  pick<T extends PickCandidate>(members: readonly T[], eligible: (member: T) => boolean, { advance = true } = {}): T | undefined {
    const count = members.length;
    let chosen: number | undefined;
    for (let step = 1; step <= count; step++) {
      const index = (this.last + step) % count;
      const member = members[index]!;
      if (!eligible(member)) continue;
      if (this.balance === 'round_robin') {
        chosen = index;
        break;
      }
      if (chosen === undefined || member.openConns < members[chosen]!.openConns) chosen = index;
    }
    if (chosen === undefined) return undefined;
    if (advance) this.last = chosen;
    return members[chosen];
  }
}
