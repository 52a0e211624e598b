import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

/**
 * A TCP relay on 127.0.0.1 in front of a real server, for faults a loopback peer cannot
 * produce by itself: `blackhole()` makes every connection through it a silently dead path.
 */
export interface FaultRelay {
  port: number;
  /**
   * From now on nothing crosses the connections open through the relay, in either direction,
   * not even a FIN or a reset: when one side dies, the other still looks connected (a host or
   * a path that vanished). New connections are refused until `heal()`.
   */
  blackhole(): void;
  /**
   * Every connection open through the relay is reset on both sides (a peer that crashed, a
   * path that broke loudly), and new connections are refused until `heal()`.
   */
  reset(): void;
  /** New connections are relayed again; the blackholed ones stay dead. */
  heal(): void;
  close(): Promise<void>;
}

interface Pair {
  near: Socket;
  far: Socket;
  dead: boolean;
}

export async function startFaultRelay(targetPort: number): Promise<FaultRelay> {
  const pairs = new Set<Pair>();
  let refusing = false;

  const server = createServer({ allowHalfOpen: true }, (near) => {
    near.on('error', () => {});
    if (refusing) {
      near.destroy();
      return;
    }
    near.pause();
    const far = connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true });
    far.on('error', () => {});
    const pair: Pair = { near, far, dead: false };
    pairs.add(pair);
    far.once('connect', () => {
      if (pair.dead) return;
      near.pipe(far);
      far.pipe(near);
      near.resume();
    });
    // While alive, a close on one side closes the other; once dead, closes are swallowed.
    near.once('close', () => pair.dead || far.destroy());
    far.once('close', () => pair.dead || near.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

  return {
    port: (server.address() as AddressInfo).port,
    blackhole() {
      refusing = true;
      for (const pair of pairs) {
        pair.dead = true;
        pair.near.unpipe(pair.far);
        pair.far.unpipe(pair.near);
        pair.near.pause();
        pair.far.pause();
      }
    },
    reset() {
      refusing = true;
      for (const pair of pairs) {
        pair.dead = true;
        pair.near.resetAndDestroy();
        pair.far.resetAndDestroy();
      }
      pairs.clear();
    },
    heal() {
      refusing = false;
    },
    close: () =>
      new Promise((resolve) => {
        for (const { near, far } of pairs) {
          near.destroy();
          far.destroy();
        }
        server.close(() => resolve());
      }),
  };
}
