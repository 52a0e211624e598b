import { get } from 'node:http';
import { connect } from 'node:net';
import { Observable } from 'rxjs';
import { AdminServer } from '../../src/admin/index.js';
import { Secret, type AdminSettings } from '../../src/config/index.js';
import { DirectoryRegistry, type AtomicWriteHooks, type CommonServer } from '../../src/server/index.js';
import type { TestConfigDir } from './configs.js';

export interface TestAdmin {
  admin: AdminServer;
  url: string;
  token: string | undefined;
  /** A JSON request with the token; resolves with status and parsed body. */
  request(method: string, path: string, body?: unknown, options?: { token?: string | null; raw?: string }): Promise<{ status: number; body: any }>;
}

/** An AdminServer on 127.0.0.1:0 for an in-process CommonServer. */
export async function startAdmin(
  server: CommonServer,
  config: TestConfigDir,
  options: {
    token?: string;
    writeHooks?: AtomicWriteHooks;
    admin?: Partial<AdminSettings>;
    maxEventQueueBytes?: number;
    fingerprint?: string;
    historyFile?: string;
  } = {},
): Promise<TestAdmin> {
  const admin = new AdminServer({
    server,
    registry: new DirectoryRegistry({ server, groupsDir: config.groupsDir, ...(options.writeHooks ? { hooks: options.writeHooks } : {}) }),
    config: { bind: { host: '127.0.0.1', port: 0 }, ...(options.token ? { token: new Secret(options.token) } : {}), ...options.admin },
    ...(options.maxEventQueueBytes === undefined ? {} : { maxEventQueueBytes: options.maxEventQueueBytes }),
    ...(options.fingerprint === undefined ? {} : { fingerprint: options.fingerprint }),
    ...(options.historyFile === undefined ? {} : { historyFile: options.historyFile }),
  });
  await admin.listen();
  const url = admin.url();
  return {
    admin,
    url,
    token: options.token,
    async request(method, path, body, { token, raw } = {}) {
      const useToken = token === undefined ? options.token : token;
      const res = await fetch(`${url}${path}`, {
        method,
        headers: {
          ...(useToken ? { authorization: `Bearer ${useToken}` } : {}),
          ...(body !== undefined || raw !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(raw !== undefined ? { body: raw } : body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON (metrics, pages): keep the text
      }
      return { status: res.status, body: parsed };
    },
  };
}

export interface RawAnswer {
  /** 0 when the server closed without answering. */
  status: number;
  headers: string;
  body: string;
}

/**
 * One HTTP/1.1 request written byte for byte on a fresh loopback connection (any request
 * target, any Host, headers fetch() would refuse to send), read until the server closes.
 */
export function rawHttp(
  port: number,
  {
    method = 'GET',
    target,
    host = `127.0.0.1:${port}`,
    headers = {},
    body,
  }: { method?: string; target: string; host?: string | null; headers?: Record<string, string>; body?: string },
): Promise<RawAnswer> {
  const lines = [`${method} ${target} HTTP/1.1`, ...(host === null ? [] : [`Host: ${host}`]), 'Connection: close'];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  if (body !== undefined) lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' ? undefined : reject(error)));
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const split = text.indexOf('\r\n\r\n');
      const head = split === -1 ? text : text.slice(0, split);
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), headers: head, body: split === -1 ? '' : text.slice(split + 4) });
    });
    socket.write(`${lines.join('\r\n')}\r\n\r\n${body ?? ''}`);
  });
}

export interface SseMessage {
  event: string;
  data: any;
}

/** The server-sent events of `url`, parsed, after an `open` marker; unsubscribing closes the connection. */
export function sse(url: string): Observable<SseMessage> {
  return new Observable<SseMessage>((subscriber) => {
    const req = get(url, (res) => {
      if (res.statusCode !== 200) {
        subscriber.error(new Error(`SSE ${url}: HTTP ${res.statusCode}`));
        res.resume();
        return;
      }
      // The server subscribes to its events before it answers: from here on nothing is missed.
      subscriber.next({ event: 'open', data: null });
      res.setEncoding('utf8');
      let buffer = '';
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length > 0) subscriber.next({ event, data: JSON.parse(data.join('\n')) });
        }
      });
      res.on('end', () => subscriber.complete());
    });
    req.on('error', (error) => subscriber.error(error));
    return () => req.destroy();
  });
}

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * A strict reader of the Prometheus text exposition format (0.0.4): every line must be a
 * `# HELP`, a `# TYPE` or a sample `name{label="value",...} number`; anything else throws.
 */
export function parsePrometheus(text: string): { samples: PromSample[]; types: Map<string, string> } {
  const samples: PromSample[] = [];
  const types = new Map<string, string>();
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  // Values as Prometheus reads them (Go's ParseFloat): NaN and Inf in any case. prom-client
  // prints an event-loop lag with no sample yet as "Nan".
  const sampleLine = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (-?(?:[0-9.eE+-]+|[Nn][Aa][Nn]|[+-]?[Ii][Nn][Ff]))(?: -?\\d+)?$`);
  const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/gy;
  text.split('\n').forEach((line, i) => {
    if (line === '') return;
    const help = new RegExp(`^# HELP (${NAME}) .*$`).exec(line);
    if (help) return;
    const type = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      return;
    }
    const match = sampleLine.exec(line);
    if (!match) throw new Error(`line ${i + 1} is not Prometheus text: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    if (match[2]) {
      label.lastIndex = 0;
      let consumed = 0;
      let part: RegExpExecArray | null;
      while ((part = label.exec(match[2])) !== null) {
        labels[part[1]!] = part[2]!;
        consumed = label.lastIndex;
      }
      if (consumed !== match[2].length) throw new Error(`line ${i + 1}: bad labels ${JSON.stringify(match[2])}`);
    }
    samples.push({
      name: match[1]!,
      labels,
      value: /nan/i.test(match[3]!) ? NaN : /inf/i.test(match[3]!) ? (match[3]!.startsWith('-') ? -Infinity : Infinity) : Number(match[3]),
    });
  });
  return { samples, types };
}

/** The value of the one sample named `name` whose labels include `labels`. */
export function sampleValue(samples: PromSample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}
