import type { Socket } from 'node:net';
import { Secret, type VhostAppSpec } from '../config/index.js';
import { headerValues, type RequestHead } from './http-head.js';

/** What the HTTP vhost reads from a request to route it, and the head it sends the app instead. */

/** The request's host name: absolute-form target first, else its one Host header. */
export function hostOf(head: RequestHead): string | undefined {
  const absolute = /^https?:\/\/([^/?#]+)/i.exec(head.target);
  const hosts = headerValues(head.headers, 'host');
  if (absolute === null && hosts.length !== 1) return undefined;
  const authority = (absolute?.[1] ?? hosts[0]!).toLowerCase();
  const match = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+?)\.?(?::\d{1,5})?$/.exec(authority);
  return match?.[1];
}

export function pathOf(target: string): string {
  if (target.startsWith('/')) return target;
  const absolute = /^https?:\/\/[^/?#]+(\/[^?#]*)?/i.exec(target);
  return absolute?.[1] ?? '/';
}

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

/**
 * The head the app receives: the user's own lines, in order and as written, with the Host
 * rewritten if asked, the proxy's credentials removed, and the forwarding headers set by us
 * (a user cannot supply its own X-Real-IP; X-Forwarded-For keeps what came before).
 */
export function rewriteHead(head: RequestHead, vhost: VhostAppSpec, ip: string): Buffer {
  const lines = [`${head.method} ${head.target} HTTP/1.${head.minor}`];
  const forwardedFor: string[] = [];
  for (const [name, value] of head.headers) {
    switch (name.toLowerCase()) {
      case 'host':
        lines.push(vhost.hostHeaderRewrite === undefined ? `${name}: ${value}` : `Host: ${vhost.hostHeaderRewrite}`);
        break;
      case 'x-forwarded-for':
        forwardedFor.push(value);
        break;
      case 'x-forwarded-proto':
      case 'x-real-ip':
        break;
      case 'authorization':
        if (vhost.basicAuth === undefined) lines.push(`${name}: ${value}`);
        break;
      default:
        lines.push(`${name}: ${value}`);
    }
  }
  forwardedFor.push(ip);
  lines.push(`X-Forwarded-For: ${forwardedFor.join(', ')}`, 'X-Forwarded-Proto: http', `X-Real-IP: ${ip}`);
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}
