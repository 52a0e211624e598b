import { BlockList, isIP } from 'node:net';
import { z } from 'zod';
import { parseCidr } from './group-security.js';
import { formatHostPort, type HostPort, type Parsed } from './values.js';

/** One entry of a host's `allowLocal:`: addresses (a CIDR) and the ports allowed on them. */
export interface AllowLocalEntry {
  /** As written, for messages. */
  readonly text: string;
  readonly address: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
  /** Inclusive; 1–65535 when the entry names no port. */
  readonly ports: { readonly from: number; readonly to: number };
}

/** What a host allows when its file has no `allowLocal:`: loopback addresses, any port. */
export const DEFAULT_ALLOW_LOCAL: readonly string[] = Object.freeze(['127.0.0.0/8', '::1']);

const ENTRY_EXPECTED = 'expected an address or CIDR with an optional port or port range, such as 127.0.0.1, 10.0.0.0/8:80-90 or [::1]:22';

/**
 * `127.0.0.1`, `10.0.0.0/8:80-90`, `::1` (an IPv6 address takes a port only in brackets:
 * `[::1]:22`, `[fd00::/8]:8000-8100`).
 */
export function parseAllowLocalEntry(text: string): Parsed<AllowLocalEntry> {
  const trimmed = text.trim();
  let addressPart: string;
  let portPart: string | undefined;
  if (trimmed.startsWith('[')) {
    const close = trimmed.indexOf(']');
    if (close < 0) return { ok: false, problem: `"${text}": a "[" without its "]"; ${ENTRY_EXPECTED}` };
    addressPart = trimmed.slice(1, close);
    const rest = trimmed.slice(close + 1);
    if (rest !== '' && !rest.startsWith(':')) return { ok: false, problem: `"${text}": expected ":PORT" after "]"; ${ENTRY_EXPECTED}` };
    portPart = rest === '' ? undefined : rest.slice(1);
  } else if (trimmed.split(':').length > 2) {
    // More than one colon: a bare IPv6 address (its port would need brackets).
    addressPart = trimmed;
  } else {
    const colon = trimmed.indexOf(':');
    addressPart = colon < 0 ? trimmed : trimmed.slice(0, colon);
    portPart = colon < 0 ? undefined : trimmed.slice(colon + 1);
  }
  const cidr = parseCidr(addressPart);
  if (cidr === undefined) return { ok: false, problem: `"${text}": "${addressPart}" is not an address or CIDR; ${ENTRY_EXPECTED}` };
  const ports = portPart === undefined ? { from: 1, to: 65535 } : parsePorts(portPart);
  if (ports === undefined) return { ok: false, problem: `"${text}": "${portPart}" is not a port (1-65535) or a range such as 80-90` };
  return { ok: true, value: Object.freeze({ text: trimmed, ...cidr, ports: Object.freeze(ports) }) };
}

function parsePorts(text: string): { from: number; to: number } | undefined {
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (match === null) return undefined;
  const from = Number(match[1]);
  const to = match[2] === undefined ? from : Number(match[2]);
  return from >= 1 && to <= 65535 && from <= to ? { from, to } : undefined;
}

/**
 * Every local target a host's groupclient may dial for an app the server sent. Only IP
 * addresses match (and `localhost`, taken as 127.0.0.1 and ::1): a host name would let
 * whoever answers DNS choose what the host dials.
 */
export class AllowLocal {
  private readonly entries: readonly AllowLocalEntry[];

  constructor(entries: readonly AllowLocalEntry[]) {
    this.entries = entries;
  }

  static of(texts: readonly string[]): AllowLocal {
    return new AllowLocal(
      texts.map((text) => {
        const parsed = parseAllowLocalEntry(text);
        if (!parsed.ok) throw new Error(parsed.problem);
        return parsed.value;
      }),
    );
  }

  /** The entries, as written. */
  get texts(): string[] {
    return this.entries.map((entry) => entry.text);
  }

  /** Why `target` may not be dialed, in words naming the target and the rule; undefined if allowed. */
  refusal(target: HostPort): string | undefined {
    const where = formatHostPort(target);
    const addresses = target.host === 'localhost' ? ['127.0.0.1', '::1'] : [unmapped(target.host)];
    if (isIP(addresses[0]!) === 0) return `local target ${where} is a host name: allowLocal matches addresses only`;
    const allowed = addresses.every((address) => this.entries.some((entry) => matches(entry, address, target.port)));
    return allowed ? undefined : `local target ${where} is outside allowLocal (${this.texts.join(', ') || 'nothing'})`;
  }
}

function matches(entry: AllowLocalEntry, address: string, port: number): boolean {
  const family = isIP(address) === 4 ? 'ipv4' : 'ipv6';
  if (family !== entry.family || port < entry.ports.from || port > entry.ports.to) return false;
  const list = new BlockList();
  list.addSubnet(entry.address, entry.prefix, entry.family);
  return list.check(address, family);
}

/** `::ffff:10.0.0.1` is 10.0.0.1: an IPv4 rule must judge it. */
function unmapped(host: string): string {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare);
  return mapped ? mapped[1]! : bare;
}

const ALLOW_LOCAL_EXPECTED = `expected a list of addresses or CIDRs with optional ports, such as ["127.0.0.1", "10.0.0.0/8:80-90", "[::1]:22"]`;

/** `allowLocal:` in a host's group file: parsed here, so a bad entry is an error at its index. */
export const allowLocalSchema = z
  .array(z.string(ALLOW_LOCAL_EXPECTED), ALLOW_LOCAL_EXPECTED)
  .transform((texts, ctx) => {
    const entries: AllowLocalEntry[] = [];
    texts.forEach((text, index) => {
      const parsed = parseAllowLocalEntry(text);
      if (parsed.ok) entries.push(parsed.value);
      else ctx.addIssue({ code: 'custom', path: [index], message: parsed.problem });
    });
    return new AllowLocal(entries);
  })
  .meta({
    description:
      'Client side: the local targets the groupclient may dial for apps the server sends (addresses or CIDRs, each with an optional port or port range: "127.0.0.1", "10.0.0.0/8:80-90", "[::1]:22"). Default: loopback addresses (127.0.0.0/8, ::1), any port',
  });
