import type { Socket } from 'node:net';
import { headerKey, Secret, type VhostAppSpec } from '../config/index.js';
import { headerLines, withHeaderRules } from './header-rewrite.js';
import { headerValues, type Header, type RequestHead } from '../net/http-head.js';
import type { RequestTarget } from './request-target.js';

/** What the HTTP vhost checks of a request, and the head it sends the app instead. */

/** `Authorization: Basic ...` against the app's user and password, compared in constant time. */
export function authorized(head: RequestHead, auth: NonNullable<VhostAppSpec['basicAuth']>): boolean {
  const values = headerValues(head.headers, 'authorization');
  const match = values.length === 1 ? /^Basic +([A-Za-z0-9+/=]{1,4096})$/i.exec(values[0]!) : null;
  if (match === null) return false;
  const given = new Secret(Buffer.from(match[1]!, 'base64').toString('utf8'));
  return given.equals(new Secret(`${auth.user}:${auth.password.reveal()}`));
}

/** The user's IP address, an IPv4 user on a dual-stack socket written as IPv4. */
export function clientIp(socket: Socket): string {
  const address = socket.remoteAddress ?? '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/** Where the user came from and which vhost port it reached, as the forwarding headers say it. */
export interface UserAddress {
  readonly ip: string;
  readonly vhostPort: number | undefined;
}

/**
 * Headers that say what the proxy saw (the user's address, the name and port it asked for, the
 * URL it requested): an app that sits behind a proxy believes them, so only we may write them.
 * Names are compared with `_` read as `-`, as CGI-style apps (PHP, WSGI) merge the two.
 */
function isProxyHeader(key: string): boolean {
  return key === 'host' || key === 'forwarded' || key === 'x-real-ip' || key === 'x-original-url' || key === 'x-rewrite-url' || key.startsWith('x-forwarded-');
}

/**
 * The head the app receives: the request-target as routed (origin-form, path in normal form),
 * the Host of that target (or the app's rewrite), the user's other lines in order and as
 * written without the proxy's credentials, and the forwarding headers set by us.
 * X-Forwarded-For keeps what came before, with the user's address appended; every other
 * forwarding header a user wrote is dropped. The app's `requestHeaders` then apply.
 */
export function rewriteHead(head: RequestHead, target: RequestTarget, vhost: VhostAppSpec, user: UserAddress): Buffer {
  const lines: Header[] = [['Host', vhost.hostHeaderRewrite ?? target.authority]];
  const forwardedFor: string[] = [];
  for (const [name, value] of head.headers) {
    const key = headerKey(name);
    if (key === 'x-forwarded-for') forwardedFor.push(value);
    else if (key === 'authorization' && vhost.basicAuth !== undefined) continue;
    else if (!isProxyHeader(key)) lines.push([name, value]);
  }
  forwardedFor.push(user.ip);
  lines.push(
    ['X-Forwarded-For', forwardedFor.join(', ')],
    ['X-Forwarded-Host', target.authority],
    ...(user.vhostPort === undefined ? [] : [['X-Forwarded-Port', String(user.vhostPort)] as const]),
    ['X-Forwarded-Proto', 'http'],
    ['X-Real-IP', user.ip],
  );
  // The app's own rules come last: they may replace or drop our forwarding headers too.
  const requestLine = `${head.method} ${target.forward} HTTP/1.${head.minor}\r\n`;
  return Buffer.from(requestLine + headerLines(withHeaderRules(lines, vhost.requestHeaders)), 'latin1');
}
