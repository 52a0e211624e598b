import { isIPv4, isIPv6 } from 'node:net';
import {
  Command,
  INETProtocol,
  IPv4Address,
  IPv4ProxyAddress,
  IPv6Address,
  IPv6ProxyAddress,
  Peer,
  TransportProtocol,
  UnspecProxyAddress,
  V1ProxyProtocol,
  V2ProxyProtocol,
} from 'proxy-protocol-js';
import type { ProxyProtocolVersion } from '../config/index.js';
import type { UserAddress } from '../protocol/index.js';

/**
 * The PROXY protocol header (HAProxy's proxy-protocol.txt) that tells a local app which user it
 * serves, written before the user's first byte. The layout is the library's; what goes in it is
 * decided here: an IPv4 user seen through a dual-stack socket (`::ffff:a.b.c.d`) is sent as
 * TCP4, and a pair of addresses the header cannot carry (missing, not IPs, mixed families) is
 * sent as UNKNOWN (v1) or LOCAL (v2), which consumers read as "no address", never as a guess.
 */
export function proxyHeader(version: ProxyProtocolVersion, user: UserAddress | undefined): Buffer {
  const endpoints = user === undefined ? undefined : sameFamily(user);
  return version === 'v1' ? headerV1(endpoints) : headerV2(endpoints);
}

interface Endpoints {
  family: 4 | 6;
  source: string;
  sourcePort: number;
  destination: string;
  destinationPort: number;
}

function headerV1(endpoints: Endpoints | undefined): Buffer {
  if (endpoints === undefined) return Buffer.from('PROXY UNKNOWN\r\n', 'ascii');
  const protocol = endpoints.family === 4 ? INETProtocol.TCP4 : INETProtocol.TCP6;
  const header = new V1ProxyProtocol(protocol, new Peer(endpoints.source, endpoints.sourcePort), new Peer(endpoints.destination, endpoints.destinationPort));
  return Buffer.from(header.build(), 'ascii');
}

function headerV2(endpoints: Endpoints | undefined): Buffer {
  if (endpoints === undefined) return Buffer.from(new V2ProxyProtocol(Command.LOCAL, TransportProtocol.UNSPEC, new UnspecProxyAddress()).build());
  const { source, sourcePort, destination, destinationPort } = endpoints;
  const address =
    endpoints.family === 4
      ? new IPv4ProxyAddress(IPv4Address.createFrom(ipv4Bytes(source)), sourcePort, IPv4Address.createFrom(ipv4Bytes(destination)), destinationPort)
      : new IPv6ProxyAddress(IPv6Address.createFrom(ipv6Bytes(source)), sourcePort, IPv6Address.createFrom(ipv6Bytes(destination)), destinationPort);
  return Buffer.from(new V2ProxyProtocol(Command.PROXY, TransportProtocol.STREAM, address).build());
}

/** Both ends as one family, or undefined when the header cannot carry them. */
function sameFamily(user: UserAddress): Endpoints | undefined {
  const source = plainAddress(user.remoteAddress);
  const destination = plainAddress(user.localAddress);
  if (source === undefined || destination === undefined || source.family !== destination.family) return undefined;
  return { family: source.family, source: source.text, sourcePort: user.remotePort, destination: destination.text, destinationPort: user.localPort };
}

const MAPPED_V4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/** An address as the header writes it: IPv4-mapped IPv6 unmapped, a zone id dropped. */
function plainAddress(text: string): { family: 4 | 6; text: string } | undefined {
  const mapped = MAPPED_V4.exec(text);
  if (mapped !== null && isIPv4(mapped[1]!)) return { family: 4, text: mapped[1]! };
  if (isIPv4(text)) return { family: 4, text };
  // A zone (fe80::1%eth0) means nothing on another host, and the header has no room for it.
  const withoutZone = text.split('%')[0]!;
  if (isIPv6(withoutZone)) return { family: 6, text: withoutZone.toLowerCase() };
  return undefined;
}

function ipv4Bytes(text: string): number[] {
  return text.split('.').map(Number);
}

/** 16 bytes of an IPv6 address Node accepted (`::` compression, an IPv4 tail allowed). */
function ipv6Bytes(text: string): number[] {
  let groups: string[];
  const tail = /(\d{1,3}(?:\.\d{1,3}){3})$/.exec(text);
  const [head, rest] = (tail === null ? text : `${text.slice(0, tail.index)}0:0`).split('::') as [string, string | undefined];
  const left = head === '' ? [] : head.split(':');
  if (rest === undefined) groups = left;
  else {
    const right = rest === '' ? [] : rest.split(':');
    groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  }
  const bytes = groups.flatMap((group) => {
    const value = parseInt(group, 16);
    return [value >> 8, value & 0xff];
  });
  if (tail !== null) bytes.splice(12, 4, ...ipv4Bytes(tail[1]!));
  return bytes;
}
