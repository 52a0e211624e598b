import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { test } from 'node:test';
import { VirtualTimeScheduler } from 'rxjs';
import type { ClientEvent } from '../../src/client/events.js';
import { ClientVisitors, VISITOR_UDP_IDLE_MS } from '../../src/client/visitors.js';
import type { VisitorSpec } from '../../src/config/index.js';
import { DatagramLink, MuxSession, type MuxStream } from '../../src/net/index.js';
import { eventually } from '../helpers/eventually.js';
import { socketPair } from '../helpers/net.js';
import { unusedUdpPort } from '../helpers/udp.js';
import { advance, settle } from '../helpers/virtual-clock.js';

/**
 * A UDP visitor's user is let go after VISITOR_UDP_IDLE_MS without a datagram, on the
 * visitors' clock (virtual here): each datagram restarts the wait, and its stream ends with a
 * FIN at the due time, not a ms before. The stream is a real mux stream over loopback TCP.
 */
test('a UDP visitor user idle for VISITOR_UDP_IDLE_MS since its last datagram is let go then, not a ms before', { timeout: 10_000 }, async (t) => {
  const [near, far] = await socketPair();
  const opener = new MuxSession(near, 'opener', { onClosed: () => {} });
  const seen: string[] = [];
  let ended: string | undefined;
  const acceptor = new MuxSession(far, 'acceptor', {
    onStream: (stream) => {
      stream.on('error', () => {});
      new DatagramLink(stream, { onDatagram: (payload) => seen.push(payload.toString()), onClosed: (how) => (ended = how) });
    },
    onClosed: () => {},
  });
  const clock = new VirtualTimeScheduler();
  const port = await unusedUdpPort();
  const spec: VisitorSpec = { name: 'dns', group: 'office-a', app: 'dns', bind: { host: '127.0.0.1', port }, type: 'udp' };
  const events: ClientEvent[] = [];
  const open = async (): Promise<MuxStream> => opener.open({ type: 'StartWorkConn', app: 'dns', pairingId: 'visit-1' }).on('error', () => {});
  const visitors = new ClientVisitors([spec], open, (event) => events.push(event), clock);
  const user = createSocket('udp4');
  t.after(() => {
    visitors.close();
    user.close();
    opener.destroy('test over');
    acceptor.destroy('test over');
  });
  await visitors.listen();
  assert.equal(events[0]?.type, 'visitor-listening');

  user.send('first', port, '127.0.0.1');
  await eventually(() => seen.length === 1, { message: 'the first datagram relayed' });
  advance(clock, VISITOR_UDP_IDLE_MS / 2);
  user.send('second', port, '127.0.0.1');
  await eventually(() => seen.length === 2, { message: 'the second datagram relayed' });
  // Idle since the second datagram: due VISITOR_UDP_IDLE_MS after it, not after the first.
  advance(clock, VISITOR_UDP_IDLE_MS - 1);
  await settle();
  assert.equal(ended, undefined, 'still relayed a ms before its idle timeout');
  advance(clock, 1);
  await eventually(() => ended !== undefined, { message: 'the idle user let go' });
  assert.equal(ended, 'end', 'an idle user ends its stream with a FIN');
  assert.deepEqual(seen, ['first', 'second']);
  assert.equal(clock.actions.length, 0, 'no timer of the user is left');
});
