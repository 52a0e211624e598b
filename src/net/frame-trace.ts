import createDebug from 'debug';
import type { Socket } from 'node:net';
import { encodeFrame, type Message } from '../protocol/index.js';
import { peerOf } from './peer.js';

/**
 * `DEBUG=ntp:net:frames`: one line per frame either way, with its peer, type and size. Never
 * the frame's content: a Login carries a proof, a NewWorkConn its pairing id and proof.
 */
const debug = createDebug('ntp:net:frames');

/** Records a frame read from `socket` (`bytes`: its length on the wire, header included). */
export function traceFrameIn(socket: Socket, message: Message, bytes: number): void {
  // Checked first: naming the peer costs more than the rest of a frame's handling.
  if (debug.enabled) debug('%s <- %s %d bytes', peerOf(socket), message.type, bytes);
}

/** Encodes `message`, writes it on `socket` and records it; the one way frames are sent. */
export function writeFrame(socket: Socket, message: Message): boolean {
  const frame = encodeFrame(message);
  if (debug.enabled) debug('%s -> %s %d bytes', peerOf(socket), message.type, frame.length);
  return socket.write(frame);
}
