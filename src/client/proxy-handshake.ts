import { isIPv4, isIPv6 } from 'node:net';
import type { Socket } from 'node:net';
import { formatHostPort, formatProxy, type HostPort, type ProxyUrl } from '../config/index.js';
import { readExactly, readResponseHead } from '../net/head-reader.js';
import { HeadError, type ResponseHead } from '../net/http-head.js';
import { statusOf } from '../net/websocket-upgrade.js';

/*
 * Asking a proxy for a tunnel to the common port, over a TCP conn to the proxy: HTTP CONNECT
 * (RFC 9110 9.3.6, Basic credentials) or SOCKS5 (RFC 1928, user/password RFC 1929). Written
 * here, not taken from a package: each is a few fixed messages, and what we need from them
 * (bounded reads, a refusal naming the proxy and its answer, the bytes after the answer kept
 * for TLS) is exactly what the small libraries leave out or make hard to see.
 */

export const PROXY_ERROR_CODES = ['PROXY_REFUSED'] as const;

/** The proxy refused, or did not speak its protocol; retried with the usual backoff. */
export class ProxyError extends Error {
  override readonly name = 'ProxyError';
  readonly code: (typeof PROXY_ERROR_CODES)[number] = 'PROXY_REFUSED';
}

/** Opens the tunnel to `target`; resolves when the proxy said yes. The caller bounds the wait. */
export function proxyHandshake(socket: Socket, proxy: ProxyUrl, target: HostPort): Promise<void> {
  return proxy.scheme === 'http' ? httpConnect(socket, proxy, target) : socks5Connect(socket, proxy, target);
}

async function httpConnect(socket: Socket, proxy: ProxyUrl, target: HostPort): Promise<void> {
  const authority = formatHostPort(target);
  const credentials =
    proxy.username === undefined
      ? ''
      : `Proxy-Authorization: Basic ${Buffer.from(`${proxy.username}:${proxy.password?.reveal() ?? ''}`).toString('base64')}\r\n`;
  socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${credentials}\r\n`);
  let answer: ResponseHead;
  try {
    answer = await readResponseHead(socket, `proxy ${formatProxy(proxy)}`);
  } catch (error) {
    // A proxy that does not speak HTTP is refused like one that says no: named, then retried.
    if (error instanceof HeadError) throw new ProxyError(`${error.message} (its answer to CONNECT ${authority})`, { cause: error });
    throw error;
  }
  if (answer.status < 200 || answer.status > 299) throw new ProxyError(`proxy ${formatProxy(proxy)} refused CONNECT to ${authority}: ${statusOf(answer)}`);
}

const SOCKS_VERSION = 0x05;
const NO_AUTH = 0x00;
const USER_PASSWORD = 0x02;
const NO_ACCEPTABLE = 0xff;

/** RFC 1928 section 6. */
const SOCKS_REPLIES: Record<number, string> = {
  1: 'general SOCKS server failure',
  2: 'connection not allowed by ruleset',
  3: 'network unreachable',
  4: 'host unreachable',
  5: 'connection refused',
  6: 'TTL expired',
  7: 'command not supported',
  8: 'address type not supported',
};

async function socks5Connect(socket: Socket, proxy: ProxyUrl, target: HostPort): Promise<void> {
  const name = `proxy ${formatProxy(proxy)}`;
  const withPassword = proxy.username !== undefined;
  socket.write(Buffer.from(withPassword ? [SOCKS_VERSION, 2, NO_AUTH, USER_PASSWORD] : [SOCKS_VERSION, 1, NO_AUTH]));
  const [version, method] = await readExactly(socket, 2, name);
  if (version !== SOCKS_VERSION) throw new ProxyError(`${name} does not speak SOCKS5 (answered version ${version})`);
  if (method === NO_ACCEPTABLE || (method !== NO_AUTH && method !== USER_PASSWORD) || (method === USER_PASSWORD && !withPassword)) {
    throw new ProxyError(
      `${name} accepts none of our authentication methods (${withPassword ? 'none, user/password' : 'none: give user:pass@ in the proxy URL'})`,
    );
  }
  if (method === USER_PASSWORD) {
    const user = Buffer.from(proxy.username ?? '');
    const password = Buffer.from(proxy.password?.reveal() ?? '');
    socket.write(Buffer.concat([Buffer.from([0x01, user.length]), user, Buffer.from([password.length]), password]));
    const [, status] = await readExactly(socket, 2, name);
    if (status !== 0) throw new ProxyError(`${name} refused the user name and password (status ${status})`);
  }
  socket.write(Buffer.concat([Buffer.from([SOCKS_VERSION, 0x01, 0x00]), socksAddress(target)]));
  const [replyVersion, reply, , addressType] = await readExactly(socket, 4, name);
  if (replyVersion !== SOCKS_VERSION) throw new ProxyError(`${name} does not speak SOCKS5 (answered version ${replyVersion})`);
  if (reply !== 0) {
    const hex = `0x${reply!.toString(16).padStart(2, '0')}`;
    throw new ProxyError(`${name} refused CONNECT to ${formatHostPort(target)}: reply ${hex} (${SOCKS_REPLIES[reply!] ?? 'unknown reply'})`);
  }
  // The bound address is of no use to us, but its bytes must be read before TLS starts.
  const length = addressType === 0x01 ? 4 : addressType === 0x04 ? 16 : addressType === 0x03 ? (await readExactly(socket, 1, name))[0]! : -1;
  if (length < 0) throw new ProxyError(`${name} answered with an unknown address type ${addressType}`);
  await readExactly(socket, length + 2, name);
}

/** ATYP, address and port (RFC 1928 section 5): a name is sent as a name, for the proxy to resolve. */
function socksAddress({ host, port }: HostPort): Buffer {
  const portBytes = Buffer.from([port >> 8, port & 0xff]);
  if (isIPv4(host)) return Buffer.concat([Buffer.from([0x01, ...host.split('.').map(Number)]), portBytes]);
  if (isIPv6(host)) return Buffer.concat([Buffer.from([0x04]), ipv6Bytes(host), portBytes]);
  const name = Buffer.from(host);
  if (name.length > 255) throw new ProxyError(`${host}: a name longer than 255 bytes cannot go through SOCKS5`);
  return Buffer.concat([Buffer.from([0x03, name.length]), name, portBytes]);
}

function ipv6Bytes(host: string): Buffer {
  const [head = '', tail] = host.split('::');
  const groups = (part: string): string[] => (part === '' ? [] : part.split(':'));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const bytes = Buffer.alloc(16);
  all.forEach((group, i) => bytes.writeUInt16BE(parseInt(group, 16), i * 2));
  return bytes;
}
