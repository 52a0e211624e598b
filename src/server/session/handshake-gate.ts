import type { Socket } from 'node:net';
import type { LimitsConfig } from '../../config/index.js';
import { peerOf } from '../../net/index.js';

/**
 * Counts the connections on the common port that have not finished their login or join
 * (TLS handshake included), in total and per source address, so that a flood of half-open
 * connections is refused at accept instead of holding memory and file descriptors. Sources
 * under their own cap keep being admitted while one source is at its cap.
 */
export class HandshakeGate {
  /** Keyed by peer ("addr:port"): the same key names the raw socket and its TLS wrapper. */
  private readonly pending = new Map<string, { socket: Socket; source: string }>();
  private readonly perSource = new Map<string, number>();

  constructor(private readonly limits: Pick<LimitsConfig, 'maxHandshakes' | 'maxHandshakesPerSource'>) {}

  get size(): number {
    return this.pending.size;
  }

  /**
   * Tracks a just-accepted raw socket, or says why it must be refused. `hasSession`: the
   * source already holds an authenticated control conn, so its bursts of work conns (one per
   * user) are only bounded by the total, never by the per-source cap meant for strangers.
   */
  admit(socket: Socket, hasSession = false): string | undefined {
    const source = socket.remoteAddress ?? 'unknown';
    const fromSource = this.perSource.get(source) ?? 0;
    if (this.pending.size >= this.limits.maxHandshakes) {
      return `too many connections still logging in or joining (${this.limits.maxHandshakes})`;
    }
    if (!hasSession && fromSource >= this.limits.maxHandshakesPerSource) {
      return `too many connections from ${source} still logging in or joining (${this.limits.maxHandshakesPerSource})`;
    }
    const peer = peerOf(socket);
    this.pending.set(peer, { socket, source });
    this.perSource.set(source, fromSource + 1);
    socket.once('close', () => this.settle(peer));
    return undefined;
  }

  /** The connection logged in, joined, or went away. Idempotent. */
  settle(peer: string): void {
    const entry = this.pending.get(peer);
    if (entry === undefined) return;
    this.pending.delete(peer);
    const { source } = entry;
    const left = (this.perSource.get(source) ?? 1) - 1;
    if (left <= 0) this.perSource.delete(source);
    else this.perSource.set(source, left);
  }

  destroyAll(): void {
    for (const { socket } of this.pending.values()) socket.destroy();
  }
}
