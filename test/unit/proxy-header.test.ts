import assert from 'node:assert/strict';
import { BlockList } from 'node:net';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { V1ProxyProtocol, V2ProxyProtocol } from 'proxy-protocol-js';
import { proxyHeader } from '../../src/client/proxy-header.js';
import type { UserAddress } from '../../src/protocol/index.js';

const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

function user(remoteAddress: string, remotePort: number, localAddress: string, localPort: number): UserAddress {
  return { remoteAddress, remotePort, localAddress, localPort };
}

/** The 16 or 4 bytes of a parsed v2 address, as "a:b:..." full hex (IPv6) or dotted (IPv4). */
function textOf(bytes: readonly number[]): string {
  if (bytes.length === 4) return bytes.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(':');
}

/** Node's own parser decides whether two spellings are one address (an oracle independent of ours). */
function sameIPv6(a: string, b: string): boolean {
  const list = new BlockList();
  list.addAddress(a, 'ipv6');
  return list.check(b, 'ipv6');
}

describe('PROXY protocol header', () => {
  test('v1 for an IPv4 user: the exact line HAProxy specifies', () => {
    assert.equal(proxyHeader('v1', user('127.0.0.2', 40000, '127.0.0.1', 6080)).toString(), 'PROXY TCP4 127.0.0.2 127.0.0.1 40000 6080\r\n');
  });

  test('v1 for an IPv6 user, and an IPv4 user seen through a dual-stack socket as TCP4', () => {
    assert.equal(proxyHeader('v1', user('2001:db8::7', 1, '::1', 2)).toString(), 'PROXY TCP6 2001:db8::7 ::1 1 2\r\n');
    assert.equal(proxyHeader('v1', user('::ffff:192.0.2.9', 5, '::ffff:127.0.0.1', 6)).toString(), 'PROXY TCP4 192.0.2.9 127.0.0.1 5 6\r\n');
  });

  test('v2 for an IPv4 user: signature, PROXY over TCP4, both addresses and ports', () => {
    const header = proxyHeader('v2', user('127.0.0.2', 40000, '127.0.0.1', 6080));
    assert.deepEqual(header.subarray(0, 12), V2_SIGNATURE);
    assert.equal(header[12], 0x21, 'version 2, command PROXY');
    assert.equal(header[13], 0x11, 'AF_INET, STREAM');
    assert.equal(header.readUInt16BE(14), 12);
    assert.deepEqual([...header.subarray(16)], [127, 0, 0, 2, 127, 0, 0, 1, 40000 >> 8, 40000 & 0xff, 6080 >> 8, 6080 & 0xff]);
  });

  test('addresses the header cannot carry: UNKNOWN (v1), LOCAL with no address (v2)', () => {
    const cannot = [undefined, user('not-an-ip', 1, '127.0.0.1', 2), user('127.0.0.2', 1, '::1', 2), user('', 0, '', 0)];
    for (const address of cannot) {
      assert.equal(proxyHeader('v1', address).toString(), 'PROXY UNKNOWN\r\n', JSON.stringify(address));
      const v2 = proxyHeader('v2', address);
      assert.deepEqual(v2.subarray(0, 12), V2_SIGNATURE);
      assert.equal(v2[12], 0x20, 'version 2, command LOCAL');
      assert.equal(v2[13], 0x00, 'AF_UNSPEC');
      assert.equal(v2.length, 16, 'no address block');
    }
  });

  test('a zone id is dropped: it means nothing to the local app', () => {
    assert.equal(proxyHeader('v1', user('fe80::1%eth0', 1, 'fe80::2%eth0', 2)).toString(), 'PROXY TCP6 fe80::1 fe80::2 1 2\r\n');
  });

  const port = fc.integer({ min: 0, max: 65535 });

  test('fuzz: every IPv4 pair round-trips through an independent parser, v1 and v2', () => {
    fc.assert(
      fc.property(fc.ipV4(), port, fc.ipV4(), port, fc.boolean(), (source, sourcePort, destination, destinationPort, mapped) => {
        const spell = (address: string): string => (mapped ? `::ffff:${address}` : address);
        const address = user(spell(source), sourcePort, spell(destination), destinationPort);
        const v1 = V1ProxyProtocol.parse(proxyHeader('v1', address).toString('ascii'));
        assert.deepEqual(
          [v1.inetProtocol, v1.source.ipAddress, v1.source.port, v1.destination.ipAddress, v1.destination.port],
          ['TCP4', source, sourcePort, destination, destinationPort],
        );
        const v2 = V2ProxyProtocol.parse(proxyHeader('v2', address));
        const parsed = v2.proxyAddress as unknown as {
          sourceAddress: { address: number[] };
          destinationAddress: { address: number[] };
          sourcePort: number;
          destinationPort: number;
        };
        assert.deepEqual(
          [textOf(parsed.sourceAddress.address), parsed.sourcePort, textOf(parsed.destinationAddress.address), parsed.destinationPort],
          [source, sourcePort, destination, destinationPort],
        );
      }),
      { numRuns: 2000 },
    );
  });

  test("fuzz: every IPv6 pair (compressed, with IPv4 tails) round-trips, v2 checked by Node's address parser", () => {
    const v6 = fc.ipV6().filter((address) => !/^::ffff:\d/i.test(address));
    fc.assert(
      fc.property(v6, port, v6, port, (source, sourcePort, destination, destinationPort) => {
        const address = user(source, sourcePort, destination, destinationPort);
        const v1 = V1ProxyProtocol.parse(proxyHeader('v1', address).toString('ascii'));
        assert.equal(v1.inetProtocol, 'TCP6');
        assert.ok(sameIPv6(v1.source.ipAddress, source) && sameIPv6(v1.destination.ipAddress, destination));
        assert.deepEqual([v1.source.port, v1.destination.port], [sourcePort, destinationPort]);
        const header = proxyHeader('v2', address);
        assert.equal(header[13], 0x21, 'AF_INET6, STREAM');
        const v2 = V2ProxyProtocol.parse(header);
        const parsed = v2.proxyAddress as unknown as {
          sourceAddress: { address: number[] };
          destinationAddress: { address: number[] };
          sourcePort: number;
          destinationPort: number;
        };
        assert.ok(sameIPv6(textOf(parsed.sourceAddress.address), source), `${source} became ${textOf(parsed.sourceAddress.address)}`);
        assert.ok(sameIPv6(textOf(parsed.destinationAddress.address), destination), `${destination} became ${textOf(parsed.destinationAddress.address)}`);
        assert.deepEqual([parsed.sourcePort, parsed.destinationPort], [sourcePort, destinationPort]);
      }),
      { numRuns: 2000 },
    );
  });
});
