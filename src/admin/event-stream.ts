import createDebug from 'debug';
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { interval, type Subscription } from 'rxjs';
import { observe } from '../net/observe.js';
import { resetSocket } from '../net/reset.js';
import type { CommonServer } from '../server/index.js';

const debug = createDebug('ntp:admin:event-stream');

const KEEPALIVE_MS = 15_000;
/** Past this many bytes waiting to be sent, a subscriber is dropped: a reader that does not read costs at most this much. */
export const EVENT_STREAM_MAX_QUEUED_BYTES = 1024 * 1024;

export interface EventStreamStats {
  /** Subscribers connected now. */
  subscribers: number;
  /** Subscribers dropped since start because their queue passed the bound. */
  dropped: number;
  /** The most bytes any subscriber ever had waiting (measured after each write; a drop follows a pass at once). */
  peakQueuedBytes: number;
}

/**
 * The subscribers of /api/events (server-sent events), one `event:` per ServerEvent type.
 * Events are pushed, never pulled, so a subscriber that stops reading would make the server
 * queue every later event for it: each write is followed by a look at the bytes still queued,
 * and a subscriber over `maxQueuedBytes` is reset (it may reconnect and start afresh).
 */
export class EventStreams {
  private readonly open = new Map<ServerResponse, Subscription>();
  private dropped = 0;
  private peakQueuedBytes = 0;

  constructor(
    /** Whose events are streamed, and where a failure to stream one is counted. */
    private readonly server: Pick<CommonServer, 'observe' | 'internalErrors'>,
    private readonly maxQueuedBytes = EVENT_STREAM_MAX_QUEUED_BYTES,
  ) {}

  stats(): EventStreamStats {
    return { subscribers: this.open.size, dropped: this.dropped, peakQueuedBytes: this.peakQueuedBytes };
  }

  /** Answers the request with the stream; it lasts until the client leaves, is dropped, or `close()`. */
  serve(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive' });
    res.write(': connected\n\n');
    const subscription = this.server.observe(
      'event-stream',
      (event) => this.send(res, `event: ${event.type}\ndata: ${JSON.stringify({ ...event, at: new Date().toISOString() })}\n\n`),
      () => res.end(),
    );
    subscription.add(observe(interval(KEEPALIVE_MS), 'event-stream', () => this.send(res, ': keepalive\n\n'), this.server.internalErrors.report));
    this.open.set(res, subscription);
    res.once('close', () => {
      subscription.unsubscribe();
      this.open.delete(res);
    });
  }

  /** Ends every stream cleanly (the server is shutting down). */
  close(): void {
    for (const [res, subscription] of this.open) {
      subscription.unsubscribe();
      res.end();
    }
    this.open.clear();
  }

  private send(res: ServerResponse, text: string): void {
    if (res.destroyed) return;
    res.write(text);
    // Counts both the response's own buffer and the socket's: everything not yet in the kernel.
    const queued = res.writableLength;
    if (queued > this.peakQueuedBytes) this.peakQueuedBytes = queued;
    if (queued <= this.maxQueuedBytes) return;
    this.dropped += 1;
    const socket: Socket | null = res.socket;
    debug(
      'event stream subscriber %s:%s dropped: %d bytes queued (bound %d); %d dropped so far',
      socket?.remoteAddress,
      socket?.remotePort,
      queued,
      this.maxQueuedBytes,
      this.dropped,
    );
    this.open.get(res)?.unsubscribe();
    this.open.delete(res);
    // Not a clean end: the subscriber missed events and must be able to tell.
    if (socket !== null) resetSocket(socket);
    else res.destroy();
  }
}
