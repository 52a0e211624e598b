import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { loadGroupFile } from '../src/config/index.js';
import type { CommonServer, ServerEvent } from '../src/server/index.js';
import { makeConfigDir, randomSecret } from './helpers/configs.js';
import { startClient, startServer } from './helpers/in-process.js';
import { connectTo, streamEnding, withDeadline, type StreamEnding } from './helpers/net.js';

/**
 * The work conn's state machine driven over real sockets: a user and a local app on the two
 * ends of a real tunnel (TLS, pinned, pooled and reused work conns), with random orders of
 * writes, FINs, resets and lost sessions. Run by `npm run test:model`, not by `npm test`: it
 * still fails in some runs (an end of stream where a reset was due, after a reset with a large
 * write in flight: Linux reads a reset that meets unread bytes as an end of stream; see the
 * README), and a suite that fails by chance would hide every other result.
 */

/** What the test did to one user's conn, to judge what each end saw. */
interface Model {
  userSent: Buffer[];
  appSent: Buffer[];
  userFin: boolean;
  appFin: boolean;
  /** Set by a reset or a lost session: the flow was cut. */
  cut?: string;
  /** The end that reset its own conn: what it saw of its own destroy says nothing. */
  resetBy?: 'user' | 'app';
}

interface Real {
  user: Socket;
  app: Socket;
  server: CommonServer;
}

type Command = fc.AsyncCommand<Model, Real>;

const live = (m: Model): boolean => m.cut === undefined;

class UserWrite implements Command {
  constructor(readonly size: number) {}
  check = (m: Readonly<Model>): boolean => live(m) && !m.userFin;
  async run(m: Model, r: Real): Promise<void> {
    const chunk = randomBytes(this.size);
    m.userSent.push(chunk);
    r.user.write(chunk);
  }
  toString = (): string => `UserWrite(${this.size})`;
}

class AppWrite implements Command {
  constructor(readonly size: number) {}
  check = (m: Readonly<Model>): boolean => live(m) && !m.appFin;
  async run(m: Model, r: Real): Promise<void> {
    const chunk = randomBytes(this.size);
    m.appSent.push(chunk);
    r.app.write(chunk);
  }
  toString = (): string => `AppWrite(${this.size})`;
}

class UserFin implements Command {
  check = (m: Readonly<Model>): boolean => live(m) && !m.userFin;
  async run(m: Model, r: Real): Promise<void> {
    m.userFin = true;
    r.user.end();
  }
  toString = (): string => 'UserFin';
}

class AppFin implements Command {
  check = (m: Readonly<Model>): boolean => live(m) && !m.appFin;
  async run(m: Model, r: Real): Promise<void> {
    m.appFin = true;
    r.app.end();
  }
  toString = (): string => 'AppFin';
}

class Reset implements Command {
  constructor(readonly side: 'user' | 'app') {}
  check = live;
  async run(m: Model, r: Real): Promise<void> {
    m.cut = `${this.side} reset`;
    m.resetBy = this.side;
    (this.side === 'user' ? r.user : r.app).resetAndDestroy();
  }
  toString = (): string => `Reset(${this.side})`;
}

/** The server loses the session (heartbeat timeout, kick, takeover: all deactivate it). */
class SessionLost implements Command {
  constructor(readonly code: 'HEARTBEAT_TIMEOUT' | 'KICKED') {}
  check = live;
  async run(m: Model, r: Real): Promise<void> {
    m.cut = `session lost (${this.code})`;
    r.server.inUseGroup.get(GROUP)?.deactivate(this.code, 'lost on purpose by the model test');
  }
  toString = (): string => `SessionLost(${this.code})`;
}

/** A pause that lets bytes and control frames overtake each other or not. */
class Settle implements Command {
  check = (): boolean => true;
  async run(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  toString = (): string => 'Settle';
}

const COMMANDS = [
  fc.integer({ min: 1, max: 200_000 }).map((size) => new UserWrite(size)),
  fc.integer({ min: 1, max: 200_000 }).map((size) => new AppWrite(size)),
  fc.constant(new UserFin()),
  fc.constant(new AppFin()),
  fc.constantFrom('user' as const, 'app' as const).map((side) => new Reset(side)),
  fc.constantFrom('HEARTBEAT_TIMEOUT' as const, 'KICKED' as const).map((code) => new SessionLost(code)),
  fc.constant(new Settle()),
];

const GROUP = 'model';
const POOL = 2;

describe('work conns over real sockets, driven by generated commands', () => {
  let server: CommonServer;
  let events: import('rxjs').ReplaySubject<ServerEvent>;
  let appServer: Server;
  let stopClient: () => void;
  const appConns: Socket[] = [];
  const waiting: ((socket: Socket) => void)[] = [];

  before(async () => {
    appServer = createServer({ allowHalfOpen: true }, (socket) => {
      const waiter = waiting.shift();
      if (waiter) waiter(socket);
      else appConns.push(socket);
    });
    await new Promise<void>((resolve) => appServer.listen(0, '127.0.0.1', resolve));
    const localPort = (appServer.address() as import('node:net').AddressInfo).port;
    const config = makeConfigDir([{ name: GROUP, secret: randomSecret(), apps: [{ name: 'app', localPort }] }], {
      tls: true,
      workConnPool: POOL,
      pairingTimeout: '5s',
      heartbeatInterval: '1s',
      heartbeatTimeout: '20s',
    });
    const started = await startServer(config);
    ({ server, events } = started);
    const client = startClient(loadGroupFile(config.groupFile(GROUP)), started.port, {
      transport: { kind: 'tls', fingerprint: started.fingerprint! },
    });
    stopClient = () => client.client.stop();
    await waitUntilActive();
  });

  after(async () => {
    stopClient?.();
    await server?.close();
    await new Promise((resolve) => appServer?.close(resolve));
  });

  async function waitUntilActive(): Promise<number> {
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      const group = server.inUseGroup.get(GROUP);
      const port = group?.apps.get('app')?.port;
      if (group?.isActive && port) return port;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error('the group did not come back');
  }

  function nextAppConn(): Promise<Socket> {
    const ready = appConns.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the local app was never dialed')), 10_000);
      waiting.push((socket) => {
        clearTimeout(timer);
        resolve(socket);
      });
    });
  }

  test('nothing truncated looks clean; a conn goes back to the pool only after two clean ends; nothing leaks', { timeout: 240_000 }, async () => {
    const seen: ServerEvent[] = [];
    const subscription = events.subscribe((e) => seen.push(e));
    const since = (from: number, type: ServerEvent['type']): ServerEvent[] =>
      seen.slice(from).filter((e) => e.type === type && 'group' in e && e.group === GROUP);
    let runs = 0;
    try {
      await fc.assert(
        fc.asyncProperty(fc.commands(COMMANDS, { maxCommands: 10 }), async (commands) => {
          runs++;
          const port = await waitUntilActive();
          // A conn the client dialed for a user of a session that was lost meanwhile (its
          // StartWorkConn was in flight) belongs to no run: it must not stand in for this one's.
          await new Promise((resolve) => setTimeout(resolve, 10));
          for (const stale of appConns.splice(0)) stale.destroy();
          const from = seen.length;
          const user = await connectTo(port);
          const remote = `127.0.0.1:${user.localPort}`;
          const atUser = streamEnding(user, { keepOpen: true });
          const app = await nextAppConn();
          const atApp = streamEnding(app, { keepOpen: true });
          const model: Model = { userSent: [], appSent: [], userFin: false, appFin: false };
          await fc.asyncModelRun(() => ({ model, real: { user, app, server } }), commands);
          // A flow still open is ended in order: then it must arrive whole.
          if (live(model)) {
            if (!model.userFin) ((model.userFin = true), user.end());
            if (!model.appFin) ((model.appFin = true), app.end());
          }
          const script = commands.toString();
          const [userSaw, appSaw] = (await withDeadline(Promise.all([atUser, atApp]), 10_000, `both ends after ${script}`)).map(asTheKernelSawIt);
          const toUser = Buffer.concat(model.appSent);
          const toApp = Buffer.concat(model.userSent);

          // Which directions ended in order (a cut after both is no cut).
          const userDirectionEnded = model.userFin;
          const appDirectionEnded = model.appFin;
          const bothEnded = userDirectionEnded && appDirectionEnded;

          // Nothing truncated looks clean: a FIN comes only with every byte sent before it.
          if (model.resetBy === 'user') {
            // The user's own reset: nothing to judge at its end.
          } else if (userSaw.ending === 'fin') {
            assert.ok(appDirectionEnded, `the user saw a FIN the app never sent (${script})`);
            assert.ok(userSaw.data.equals(toUser), `the user got ${userSaw.bytes} of ${toUser.length} bytes with a clean FIN (${script})`);
          } else assert.equal(userSaw.ending, 'reset', `the user's conn ended in ${userSaw.code} (${script})`);
          if (model.resetBy === 'app') {
            // The app's own reset: nothing to judge at its end.
          } else if (appSaw.ending === 'fin') {
            assert.ok(userDirectionEnded, `the app saw a FIN the user never sent (${script})`);
            assert.ok(appSaw.data.equals(toApp), `the app got ${appSaw.bytes} of ${toApp.length} bytes with a clean FIN (${script})`);
          } else assert.equal(appSaw.ending, 'reset', `the app's conn ended in ${appSaw.code} (${script})`);
          // A flow that was never cut ends cleanly at both ends, whole.
          if (live(model)) assert.deepEqual([userSaw.ending, appSaw.ending], ['fin', 'fin'], script);
          // The survivors of a cut go away abruptly too; a whole flow in order.
          for (const socket of [user, app]) {
            if (socket.destroyed) continue;
            if (live(model)) socket.destroy();
            else socket.resetAndDestroy();
          }

          // This user's relay, by the pairing id the server gave it at accept: it ends with
          // conn-closed, or with work-conn-failed if the session was lost before the join.
          const accepted = since(from, 'user-conn-accepted').find((e) => e.type === 'user-conn-accepted' && e.remote === remote);
          assert.ok(accepted?.type === 'user-conn-accepted', `the server never accepted ${remote}`);
          const mine = (): ServerEvent | undefined =>
            seen.slice(from).find((e) => (e.type === 'conn-closed' || e.type === 'work-conn-failed') && e.pairingId === accepted.pairingId);
          await waitFor(() => mine() !== undefined, `the end of ${accepted.pairingId} (${script})`);
          const closed = mine()!;
          if (live(model)) assert.equal(closed.type, 'conn-closed', script);
          if (live(model)) assert.ok(closed.type === 'conn-closed' && closed.error === undefined, `${JSON.stringify(closed)} after ${script}`);
          // Back to the pool only after two clean ends (a clean one may also be closed, when the
          // pool filled up meanwhile); a conn cut mid-stream never.
          const reused = (): number =>
            since(from, 'work-conn-pooled').filter((e) => e.type === 'work-conn-pooled' && e.servedPairingId === accepted.pairingId).length;
          if (!bothEnded) {
            await new Promise((resolve) => setTimeout(resolve, 20));
            assert.equal(reused(), 0, `a conn cut mid-stream went back to the pool (${script})`);
          }
          // Nothing leaks: the server holds no user of this run.
          await waitFor(() => (server.inUseGroup.get(GROUP)?.apps.get('app')?.liveConnCount ?? 0) === 0, 'the relay to be gone');
        }),
        { numRuns: 40, interruptAfterTimeLimit: 150_000 },
      );
    } finally {
      subscription.unsubscribe();
    }
    assert.ok(runs >= 10, `only ${runs} runs in the time limit`);
    console.log(`# ${runs} runs; ${resetsReadAsEof} resets that Linux read as an end of stream (told apart by the kernel's TCP table)`);
    assert.ok(
      seen.some((e) => e.type === 'work-conn-pooled' && e.reused),
      'clean runs handed their work conns back to the pool',
    );
  });
});

let resetsReadAsEof = 0;

/**
 * Linux reads a reset that meets unread bytes as an end of stream, so Node reports a `fin`.
 * The kernel's own TCP table tells them apart: after a real FIN the connection is still there
 * (CLOSE_WAIT, TIME_WAIT ...); after a reset it is gone. What the tunnel sent is judged by that.
 */
function asTheKernelSawIt(saw: StreamEnding): StreamEnding {
  if (saw.ending !== 'fin' || saw.kernelState !== undefined) return saw;
  resetsReadAsEof++;
  return { ...saw, ending: 'reset', code: 'RESET_READ_AS_EOF' };
}

async function waitFor(predicate: () => boolean | number, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
