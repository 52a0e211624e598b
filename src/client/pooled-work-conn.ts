import type { Socket } from 'node:net';
import { FrameReader } from '../net/index.js';
import type { StartWorkConn } from '../protocol/index.js';

/**
 * Waits on an idle pooled work conn for the server's StartWorkConn (its one user). Resolves
 * undefined when
 * the conn closes first, or when the server sends anything else (the conn is then destroyed).
 * The user's bytes may follow the frame in the same chunk: they are put back on the socket,
 * which stays paused, so nothing is read past StartWorkConn before the local app is joined.
 */
export function awaitStartWorkConn(workConn: Socket): Promise<StartWorkConn | undefined> {
  return new Promise((resolve) => {
    const reader = new FrameReader(workConn);
    workConn.resume();
    reader.messages$.subscribe({
      next: (message) => {
        // Settle first: detach() completes messages$, which would settle with undefined.
        if (message.type === 'StartWorkConn') resolve(message);
        else {
          resolve(undefined);
          workConn.destroy();
        }
        reader.detach();
      },
      error: () => {
        workConn.destroy();
        resolve(undefined);
      },
      complete: () => resolve(undefined),
    });
  });
}
