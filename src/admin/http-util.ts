import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ConfigErrorCode } from '../config/index.js';
import type { RegistryErrorCode } from '../server/index.js';

/** The admin API's own codes; a refused registry change answers with its config or registry code. */
export const ADMIN_ERROR_CODES = [
  'UNAUTHORIZED',
  'HOST_NOT_ALLOWED',
  'ORIGIN_NOT_ALLOWED',
  'UNSUPPORTED_MEDIA_TYPE',
  'BAD_URL',
  'NOT_FOUND',
  'METHOD_NOT_ALLOWED',
  'BODY_MISSING',
  'BODY_TOO_LARGE',
  'INVALID_GROUP_NAME',
  'INVALID_SERVER',
  'GROUP_NOT_FOUND',
  'GROUP_NOT_IN_USE',
  'GROUP_ACTIVE_ELSEWHERE',
  'APP_NOT_FOUND',
  'NOT_A_CLUSTER',
  'HOSTFILE_UNAVAILABLE',
  'REGISTRY_WRITE_FAILED',
  'INTERNAL',
] as const;
export type AdminErrorCode = (typeof ADMIN_ERROR_CODES)[number];

/** An API failure with the HTTP status, a stable code and, where known, the field at fault. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: AdminErrorCode | ConfigErrorCode | RegistryErrorCode,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

export const MAX_BODY_BYTES = 64 * 1024;

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendError(res: ServerResponse, error: HttpError): void {
  if (error.status === 413) res.setHeader('connection', 'close');
  sendJson(res, error.status, { error: { code: error.code, message: error.message, ...(error.field ? { field: error.field } : {}) } });
}

/** The request body as text, refused past MAX_BODY_BYTES before buffering more. */
export function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        // Stop buffering but keep the socket, so that the 413 reaches the client; the answer
        // carries `connection: close`, which ends the upload.
        req.removeAllListeners('data');
        req.resume();
        reject(new HttpError(413, 'BODY_TOO_LARGE', `request body over ${MAX_BODY_BYTES} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** A request's target as routed: the raw path, its decoded segments and the query. */
export interface RequestTarget {
  /** As sent, still percent-encoded: what error messages and the dashboard see. */
  readonly path: string;
  /**
   * Each `/`-separated segment, percent-decoded once. Dot segments are not collapsed and an
   * encoded "/" stays inside its segment, so `..%2Fx` reaches the name check as `../x`.
   */
  readonly segments: readonly string[];
  readonly query: URLSearchParams;
}

/**
 * Splits `req.url` without the WHATWG URL parser, which would turn `%2e%2e` into a dot
 * segment and resolve it away before any check, and throws on an absolute URL it cannot
 * parse. Anything but an origin-form path, or bad percent-encoding, is a 400.
 */
export function parseRequestTarget(raw: string | undefined): RequestTarget {
  if (raw === undefined || !raw.startsWith('/')) {
    throw new HttpError(400, 'BAD_URL', 'expected a request target starting with "/"');
  }
  const queryAt = raw.indexOf('?');
  const path = queryAt === -1 ? raw : raw.slice(0, queryAt);
  let segments: string[];
  try {
    segments = path.split('/').map((segment) => decodeURIComponent(segment));
  } catch {
    throw new HttpError(400, 'BAD_URL', `malformed percent-encoding in ${JSON.stringify(path.slice(0, 200))}`);
  }
  return { path, segments, query: new URLSearchParams(queryAt === -1 ? '' : raw.slice(queryAt + 1)) };
}
