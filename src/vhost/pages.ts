/** The vhost's own answers. They name nothing behind the server: no group, app or address. */

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};

/** Every status the vhost answers with itself (an app's own answers pass through untouched). */
export const VHOST_STATUSES: readonly number[] = Object.keys(REASONS).map(Number);

const TEXT: Record<number, string> = {
  404: 'Nothing is served under this name here.',
  502: 'There was no valid answer to this request.',
  503: 'This name is offline or busy. Try again later.',
};

/** A complete response that closes the conn; `extra` header lines go before the body. */
export function errorPage(status: number, extra: readonly string[] = []): Buffer {
  const reason = REASONS[status] ?? 'Error';
  const body = `<!doctype html><meta charset="utf-8"><title>${status} ${reason}</title><h1>${status} ${reason}</h1><p>${TEXT[status] ?? ''}</p>\n`;
  const head = [
    `HTTP/1.1 ${status} ${reason}`,
    'Content-Type: text/html; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Cache-Control: no-store',
    'Connection: close',
    ...extra,
  ];
  return Buffer.from(`${head.join('\r\n')}\r\n\r\n${body}`);
}
