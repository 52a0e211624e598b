import createDebug from 'debug';
import { readFileSync } from 'node:fs';

const debug = createDebug('ntp:cli');

/** How a binary's `#!` line starts it: environment set before node, and node's own flags. */
export interface NodeLaunch {
  env: Record<string, string>;
  flags: string[];
}

/**
 * What a binary's `#!` line (`#!/usr/bin/env -S [NAME=VALUE…] node FLAGS`) gives it, for
 * whatever starts the script with `node` itself (the demo, the tests, the bench), so that it runs
 * as an installed binary does. Nothing for a script without such a line.
 *
 * Why the binaries carry them (none may go in NODE_OPTIONS, `v8.setFlagsFromString` is too late
 * once the heap exists, and the C library reads its settings once, at start):
 * - `--initial-old-space-size=64`: during a bulk transfer each relayed chunk is a short-lived
 *   buffer outside the heap, and with the config's schemas live (a few MB) Node 20's V8 sized
 *   its old generation so tightly that it ran a full mark-compact every few tens of ms.
 * - `--max-semi-space-size=2`: loading and validating the config grew the young generation to
 *   its 16 MB default cap, which it then kept at rest (about 6 MB of RSS per process); the relay
 *   keeps few objects alive across a scavenge, so a small one costs it nothing measurable.
 * - `MALLOC_TRIM_THRESHOLD_=134217728` (glibc; other C libraries ignore it): those dead read
 *   buffers are freed together, up to about 64 MB at a time (V8 lets that much external memory
 *   pile up before a scavenge), when a scavenge finds them. With glibc's default (128 KiB,
 *   moved by its own heuristics) the top of the heap was given back to the kernel after many of
 *   those scavenges and the next reads faulted it in again, page by page: in about half the
 *   runs the server took 20,000 to 70,000 page faults per GB relayed and 1.5 to 2 times the CPU
 *   (docs/performance.md); with 32 MB, some runs still did. Free heap up to 128 MB is kept for
 *   the next reads (RSS after a burst stayed at its peak with glibc's default too).
 */
export function nodeLaunchOf(script: string): NodeLaunch {
  const first = readFileSync(script, 'utf8').split('\n', 1)[0] ?? '';
  const match = /^#!\S*\benv\s+-S\s+((?:\w+=\S*\s+)*)node(?:\s+(.*))?$/.exec(first);
  if (match === null) return { env: {}, flags: [] };
  const env = Object.fromEntries(
    match[1]!
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map((assignment) => [assignment.slice(0, assignment.indexOf('=')), assignment.slice(assignment.indexOf('=') + 1)]),
  );
  return { env, flags: (match[2] ?? '').trim().split(/\s+/).filter(Boolean) };
}

/** The node flags of a binary's `#!` line (see `nodeLaunchOf`). */
export function nodeFlagsOf(script: string): string[] {
  return nodeLaunchOf(script).flags;
}

/** Says (DEBUG=ntp:cli) which node, node flags and allocator setting this process runs with. */
export function debugNodeFlags(name: string): void {
  debug(
    '%s runs on node %s with flags [%s], MALLOC_TRIM_THRESHOLD_=%s',
    name,
    process.version,
    process.execArgv.join(' '),
    process.env.MALLOC_TRIM_THRESHOLD_ ?? '(unset)',
  );
}
