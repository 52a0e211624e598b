import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

/**
 * A TCP relay on 127.0.0.1 in front of a real server, for faults a loopback peer cannot
 * produce by itself: `blackhole()` makes every connection through it a silently dead path.
 */
export interface FaultRelay {
  port: number;
  /**
   * From now on nothing crosses, in either direction, not even a FIN or a reset: when the
   * client side dies, the server side still looks connected (a host that vanished).
   */
  blackhole(): void;
  close(): Promise<void>;
}

export async function startFaultRelay(targetPort: number): Promise<FaultRelay> {
  const pairs = new Set<{ near: Socket; far: Socket }>();
  let dead = false;

  const server = createServer({ allowHalfOpen: true }, (near) => {
    near.on('error', () => {});
    if (dead) {
      near.destroy();
      return;
    }
    near.pause();
    const far = connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true });
    far.on('error', () => {});
    const pair = { near, far };
    pairs.add(pair);
    far.once('connect', () => {
      if (dead) return;
      near.pipe(far);
      far.pipe(near);
      near.resume();
    });
    // While alive, a close on one side closes the other; once dead, closes are swallowed.
    near.once('close', () => dead || far.destroy());
    far.once('close', () => dead || near.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

  return {
    port: (server.address() as AddressInfo).port,
    blackhole() {
      dead = true;
      for (const { near, far } of pairs) {
        near.unpipe(far);
        far.unpipe(near);
        near.pause();
        far.pause();
      }
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
