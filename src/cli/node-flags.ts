import createDebug from 'debug';
import { readFileSync } from 'node:fs';

const debug = createDebug('ntp:cli');

/**
 * The node flags a binary's `#!` line gives it (`#!/usr/bin/env -S node FLAGS`), for whatever
 * starts the script with `node` itself (the demo, the tests, the bench), so that it runs as an
 * installed binary does. None for a script without such a line.
 *
 * Why the binaries carry them (neither may go in NODE_OPTIONS, and `v8.setFlagsFromString` is
 * too late once the heap exists: they have to be on node's command line):
 * - `--initial-old-space-size=64`: during a bulk transfer each relayed chunk is a short-lived
 *   buffer outside the heap, and with the config's schemas live (a few MB) Node 20's V8 sized
 *   its old generation so tightly that it ran a full mark-compact every few tens of ms.
 * - `--max-semi-space-size=2`: loading and validating the config grew the young generation to
 *   its 16 MB default cap, which it then kept at rest (about 6 MB of RSS per process); the relay
 *   keeps few objects alive across a scavenge, so a small one costs it nothing measurable.
 */
export function nodeFlagsOf(script: string): string[] {
  const first = readFileSync(script, 'utf8').split('\n', 1)[0] ?? '';
  const match = /^#!\S*\benv\s+-S\s+node\s+(.*)$/.exec(first);
  return match === null ? [] : match[1]!.trim().split(/\s+/);
}

/** Says (DEBUG=ntp:cli) which node and which node flags this process runs with. */
export function debugNodeFlags(name: string): void {
  debug('%s runs on node %s with flags [%s]', name, process.version, process.execArgv.join(' '));
}
