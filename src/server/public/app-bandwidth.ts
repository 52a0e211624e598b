import type { BandwidthLimit } from '../../config/index.js';
import { TokenBucket, type RelayOptions } from '../../net/index.js';

/**
 * An app's `bandwidth`, enforced where its users enter: on the server, every user of the app
 * shares one bucket per direction. The server is where the aggregate exists (a client serves
 * one group, but users of one app may be relayed by successive client sessions), where the
 * operator of a shared uplink sets policy, and where a limit can be read in the admin API.
 * `in` shapes what is read from users, `out` what is read from the work conns towards them.
 */
export class AppBandwidth {
  readonly in: TokenBucket;
  readonly out: TokenBucket;

  constructor(limit: BandwidthLimit | undefined) {
    this.in = new TokenBucket(limit?.in);
    this.out = new TokenBucket(limit?.out);
  }

  /** A hot reload: live relays hold these same buckets, so the new rates reach them too. */
  apply(limit: BandwidthLimit | undefined): void {
    this.in.setRate(limit?.in);
    this.out.setRate(limit?.out);
  }

  /** For a relay whose outer socket is the user conn and inner one the work conn. */
  relayOptions(): RelayOptions {
    return { outerLimit: this.in, innerLimit: this.out };
  }

  /** Lets every paused reader go (the app closes: its relays are reset right after). */
  close(): void {
    this.apply(undefined);
  }
}
