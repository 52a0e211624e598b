import createDebug from 'debug';
import { chmodSync, renameSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const debug = createDebug('ntp:client:control-socket');

/** A request line longer than this is refused: the socket speaks commands, not data. */
export const CONTROL_MAX_REQUEST_BYTES = 1024;
/** Control clients served at once; more are answered with an error and closed. */
export const CONTROL_MAX_CLIENTS = 4;
/** A control client that sends no full line within this is closed. */
export const CONTROL_IDLE_TIMEOUT_MS = 5_000;

/** The commands of the control socket, one JSON line each: `{"command":"status"}`. */
export type ControlCommand = 'status' | 'reload';
export const CONTROL_COMMANDS: readonly ControlCommand[] = ['status', 'reload'];

/** One JSON line back: the command's result, or why it failed. */
export type ControlAnswer = { ok: true; result: unknown } | { ok: false; error: string };

export type ControlHandlers = Record<ControlCommand, () => ControlAnswer>;

/**
 * The default control socket of a group: `$XDG_RUNTIME_DIR/groupclient-NAME.sock` (a
 * directory private to the user), else `groupclient-UID-NAME.sock` in the temporary directory.
 */
export function defaultControlSocketPath(group: string, env: NodeJS.ProcessEnv = process.env): string {
  const runtime = env.XDG_RUNTIME_DIR;
  if (runtime !== undefined && runtime !== '') return join(runtime, `groupclient-${group}.sock`);
  return join(tmpdir(), `groupclient-${process.getuid?.() ?? 'user'}-${group}.sock`);
}

/** Whether a live process answers on the unix socket `path` (a stale file refuses). */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/**
 * The unix socket a running groupclient answers `status` and `reload` on, mode 600. Each
 * request is one JSON line, each answer one JSON line. Bounded (CONTROL_MAX_CLIENTS,
 * CONTROL_MAX_REQUEST_BYTES, CONTROL_IDLE_TIMEOUT_MS); a failure here is reported and never
 * ends the process, and the handlers only read state the client keeps anyway.
 */
export class ControlSocket {
  private readonly server: Server;
  private readonly clients = new Set<Socket>();
  /** The inode we bound: a client that took the path over later keeps its file when we close. */
  private inode: number | undefined;

  private constructor(
    readonly path: string,
    private readonly handlers: ControlHandlers,
    private readonly onError: (error: Error) => void,
  ) {
    this.server = createServer((socket) => this.onControlClient(socket));
  }

  /**
   * Listens on `path`. A file left by a dead client is replaced; one a live client answers on
   * is taken over too (the newer client takes the group over at the server as well), and
   * `tookOver` says so.
   */
  static async open(path: string, handlers: ControlHandlers, onError: (error: Error) => void): Promise<{ socket: ControlSocket; tookOver: boolean }> {
    const tookOver = statSync(path, { throwIfNoEntry: false }) !== undefined && (await answers(path));
    const control = new ControlSocket(path, handlers, onError);
    // Bound under a name of its own, then renamed over `path` (atomically replacing a stale or
    // live one): libuv unlinks the name it bound when the server closes, and that must never
    // be `path`, which a client that took over later may own by then.
    const bound = `${path}.${process.pid}`;
    rmSync(bound, { force: true });
    await new Promise<void>((resolve, reject) => {
      control.server.once('error', reject);
      // The umask makes the socket 600 from its creation (the bind is synchronous, so the
      // process-wide umask is back before anything else runs): no moment another user may connect.
      const umask = process.umask(0o177);
      try {
        control.server.listen(bound, () => {
          control.server.off('error', reject);
          resolve();
        });
      } finally {
        process.umask(umask);
      }
    });
    control.server.on('error', (error) => control.onError(error));
    chmodSync(bound, 0o600);
    control.inode = statSync(bound).ino;
    try {
      renameSync(bound, path);
    } catch (error) {
      control.server.close();
      throw error;
    }
    return { socket: control, tookOver };
  }

  private onControlClient(socket: Socket): void {
    socket.on('error', (error) => debug('control client: %s', error.message));
    if (this.clients.size >= CONTROL_MAX_CLIENTS) {
      socket.end(answerLine({ ok: false, error: `busy: ${CONTROL_MAX_CLIENTS} control clients at once` }));
      return;
    }
    this.clients.add(socket);
    socket.on('close', () => this.clients.delete(socket));
    socket.setTimeout(CONTROL_IDLE_TIMEOUT_MS, () => socket.destroy());
    let pending = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      pending += chunk;
      let newline = pending.indexOf('\n');
      while (newline >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        socket.write(answerLine(this.answer(line)));
        newline = pending.indexOf('\n');
      }
      if (pending.length > CONTROL_MAX_REQUEST_BYTES) {
        socket.end(answerLine({ ok: false, error: `request longer than ${CONTROL_MAX_REQUEST_BYTES} bytes` }));
        socket.removeAllListeners('data');
      }
    });
    socket.on('end', () => socket.end());
  }

  private answer(line: string): ControlAnswer {
    let command: unknown;
    try {
      command = (JSON.parse(line) as { command?: unknown } | null)?.command;
    } catch {
      return { ok: false, error: 'expected one JSON line: {"command":"status"} or {"command":"reload"}' };
    }
    if (typeof command !== 'string' || !(CONTROL_COMMANDS as readonly string[]).includes(command)) {
      return { ok: false, error: `unknown command ${JSON.stringify(command)}: expected one of ${CONTROL_COMMANDS.join(', ')}` };
    }
    try {
      return this.handlers[command as ControlCommand]();
    } catch (error) {
      this.onError(error as Error);
      return { ok: false, error: (error as Error).message };
    }
  }

  /** Stops listening, closes the control clients, and removes the file if it is still ours. */
  close(): void {
    for (const socket of this.clients) socket.destroy();
    this.server.close();
    try {
      if (this.inode !== undefined && statSync(this.path, { throwIfNoEntry: false })?.ino === this.inode) unlinkSync(this.path);
    } catch (error) {
      debug('removing %s: %s', this.path, (error as Error).message);
    }
  }
}

function answerLine(answer: ControlAnswer): string {
  return `${JSON.stringify(answer)}\n`;
}

/** Why `askControlSocket` got no answer: nothing listens there (no client of that group runs). */
export class NoControlSocketError extends Error {
  constructor(
    readonly path: string,
    cause: Error,
  ) {
    super(`no running groupclient answers on ${path} (${(cause as NodeJS.ErrnoException).code ?? cause.message})`, { cause });
    this.name = 'NoControlSocketError';
  }
}

/** Sends one command to a running client's control socket and resolves with its answer. */
export function askControlSocket(path: string, command: ControlCommand, timeoutMs = 10_000): Promise<ControlAnswer> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let connected = false;
    let received = '';
    socket.setEncoding('utf8');
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no answer from ${path} within ${timeoutMs / 1000}s`)));
    socket.once('connect', () => {
      connected = true;
      socket.write(`${JSON.stringify({ command })}\n`);
    });
    socket.on('data', (chunk: string) => {
      received += chunk;
      const newline = received.indexOf('\n');
      if (newline < 0) return;
      socket.end();
      try {
        resolve(JSON.parse(received.slice(0, newline)) as ControlAnswer);
      } catch {
        reject(new Error(`${path} answered something that is not JSON`));
      }
    });
    socket.on('error', (error) => reject(connected ? error : new NoControlSocketError(path, error)));
    socket.on('close', () => reject(new Error(`${path} closed without an answer`)));
  });
}
