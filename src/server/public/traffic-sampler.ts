import type { EmitServerEvent } from '../events.js';

/**
 * An app's `traffic` samples: the bytes relayed since the previous sample, emitted only when
 * some moved. The admin totals and the metrics add these up.
 */
export class TrafficSampler {
  private reportedIn = 0;
  private reportedOut = 0;

  constructor(
    private readonly group: string,
    private readonly emit: EmitServerEvent,
  ) {}

  /** `bytesIn` / `bytesOut`: totals so far; `liveConns`: conns (or UDP sessions) open now. */
  sample(app: string, bytesIn: number, bytesOut: number, liveConns: number): void {
    if (bytesIn === this.reportedIn && bytesOut === this.reportedOut) return;
    this.emit({ type: 'traffic', group: this.group, app, bytesIn: bytesIn - this.reportedIn, bytesOut: bytesOut - this.reportedOut, liveConns });
    this.reportedIn = bytesIn;
    this.reportedOut = bytesOut;
  }
}
