import { Duplex } from 'node:stream';

/** What a VirtualConn reports to the HTTP side that owns it. */
export interface VirtualConnOwner {
  /** Bytes the app sent; `done` once they are taken (the relay waits for it: backpressure). */
  onAppData(conn: VirtualConn, chunk: Buffer, done: () => void): void;
  /** The app's stream ended cleanly (its FIN arrived, after every byte before it). */
  onAppEnd(conn: VirtualConn): void;
  /** The relay was torn down as a fault: the app, its host or the session failed. */
  onFault(conn: VirtualConn, error: Error): void;
  /** The relay wants more request bytes (it drained what it had). */
  onWantMore(conn: VirtualConn): void;
}

/**
 * The user side of one work conn relay when the user is not a socket of its own: HTTP
 * requests routed by Host share one user socket, and each app they reach gets one of these.
 * It stands where a UserConn socket stands in `joinConns`, with the same contract: bytes
 * pushed here go to the app, bytes the app sends are written here, an end is a FIN, and a
 * reset (`resetAndDestroy`) is a fault the owner turns into a 502 or a reset of the user.
 */
export class VirtualConn extends Duplex {
  /** Bytes handed to the relay, as `Socket.bytesRead` counts them. */
  bytesRead = 0;
  private taken = 0;
  private faulted = false;

  constructor(
    private readonly owner: VirtualConnOwner,
    readonly remoteAddress: string | undefined,
    readonly remotePort: number | undefined,
  ) {
    super({ allowHalfOpen: true });
  }

  /** Bytes written to this conn, taken or queued, as `Socket.bytesWritten` counts them. */
  get bytesWritten(): number {
    return this.taken + this.writableLength;
  }

  /** Request bytes towards the app; false when the relay wants no more until `onWantMore`. */
  send(chunk: Buffer): boolean {
    if (this.destroyed || this.readableEnded) return false;
    this.bytesRead += chunk.length;
    return this.push(chunk);
  }

  /** Our side is through: the app sees a FIN once the relay has sent every byte before it. */
  finish(): void {
    if (!this.destroyed) this.push(null);
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  /** What resetSocket calls: a reset of a user conn, here a fault the owner answers for. */
  resetAndDestroy(): this {
    return this.destroy(new Error('the relay was reset'));
  }

  override _read(): void {
    this.owner.onWantMore(this);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.owner.onAppData(this, chunk, () => {
      this.taken += chunk.length;
      callback();
    });
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.owner.onAppEnd(this);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // A destroy before both streams ended is a fault, with or without an error (a refused
    // user is destroyed plainly, as a socket closed at accept would be).
    const clean = error === null && this.readableEnded && this.writableFinished;
    if (!clean && !this.faulted) {
      this.faulted = true;
      this.owner.onFault(this, error ?? new Error('the conn to the app was closed before its streams ended'));
    }
    callback(error);
  }
}
