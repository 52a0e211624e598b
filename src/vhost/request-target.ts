import { HeadError, headerValues, type RequestHead } from '../net/http-head.js';
import { normalisePath, PathError } from './request-path.js';

/**
 * What a request asks for, read once from its request line and Host: the same reading routes
 * it, checks it and is sent to the app, so no part of the request can name one app to the
 * router and another to the app.
 */
export interface RequestTarget {
  /** The host name to route by: lower case, without its port or trailing dot. */
  readonly host: string;
  /** The Host the app gets (unless the app rewrites it): the URI's authority in absolute form, else the user's Host. */
  readonly authority: string;
  /** The path in normal form (`normalisePath`): what locations are matched on. */
  readonly path: string;
  /** The request-target the app gets: origin-form, the normal path and the query as sent (or `*`). */
  readonly forward: string;
}

const AUTHORITY = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+?)\.?(?::(\d{1,5}))?$/;
const ABSOLUTE = /^https?:\/\/([^/?#]*)(.*)$/i;

/**
 * The target of `head`, or a HeadError (400). As RFC 9112 3.2 asks: an HTTP/1.1 request
 * without Host, with more than one, or with an invalid one is refused; an absolute-form
 * target (`GET http://b.test/x`) is routed and forwarded by its own host, its Host header
 * ignored (3.2.2), and a user:password in it refused (RFC 9110 4.2.4); an authority-form
 * target (CONNECT) is refused: the vhost is no forward proxy.
 */
export function requestTarget(head: RequestHead): RequestTarget {
  const hosts = headerValues(head.headers, 'host');
  if (hosts.length > 1) throw new HeadError(400, 'more than one Host header');
  const hostHeader = hosts[0];
  if (hostHeader === undefined && head.minor === 1) throw new HeadError(400, 'no Host header');
  if (hostHeader !== undefined && hostName(hostHeader) === undefined) throw new HeadError(400, 'an invalid Host header');
  const absolute = ABSOLUTE.exec(head.target);
  if (absolute !== null) {
    const authority = absolute[1]!;
    const rest = absolute[2]!;
    if (authority.includes('@')) throw new HeadError(400, 'user info in the request target');
    const host = hostName(authority);
    if (host === undefined) throw new HeadError(400, 'an invalid host in the request target');
    return withPath(host, authority, rest.startsWith('/') ? rest : `/${rest}`);
  }
  if (hostHeader === undefined) throw new HeadError(400, 'no Host header');
  const host = hostName(hostHeader)!;
  if (head.target === '*') {
    if (head.method !== 'OPTIONS') throw new HeadError(400, `"*" as the target of ${head.method}`);
    return { host, authority: hostHeader, path: '/', forward: '*' };
  }
  if (!head.target.startsWith('/')) throw new HeadError(400, 'a request target that is neither a path nor an absolute URI');
  return withPath(host, hostHeader, head.target);
}

/** The host name of an authority (`Name.Test.:8080` → `name.test`), undefined if it is not one. */
function hostName(authority: string): string | undefined {
  const match = AUTHORITY.exec(authority.toLowerCase());
  if (match === null || (match[2] !== undefined && Number(match[2]) > 65535)) return undefined;
  return match[1];
}

function withPath(host: string, authority: string, pathAndQuery: string): RequestTarget {
  const at = pathAndQuery.indexOf('?');
  const query = at < 0 ? '' : pathAndQuery.slice(at);
  if (query.includes('#')) throw new HeadError(400, 'a fragment ("#") in the request target');
  try {
    const path = normalisePath(at < 0 ? pathAndQuery : pathAndQuery.slice(0, at));
    return { host, authority, path, forward: `${path}${query}` };
  } catch (error) {
    if (error instanceof PathError) throw new HeadError(400, error.message);
    throw error;
  }
}
