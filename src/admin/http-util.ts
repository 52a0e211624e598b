import type { IncomingMessage, ServerResponse } from 'node:http';

/** An API failure with the HTTP status, a stable code and, where known, the field at fault. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
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
