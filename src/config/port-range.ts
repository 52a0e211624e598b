import { z } from 'zod';
import { hostPort, port, problem, type HostPort } from './values.js';

/**
 * Port ranges in a group file: `remotePort: 6000-6010` with `local: 127.0.0.1:7000-7010`. A range
 * is expanded when the file is read into one app per port, named `NAME-6000` … `NAME-6010`:
 * every later reader (claims, allowPorts, reload diffs, the API, metrics, the dashboard) sees
 * ordinary apps, so a range that grows or shrinks opens or closes only the ports it gained or lost.
 */

/** The most ports one range may expand to whatever the server allows (its apps are held in memory on both ends). */
export const PORT_RANGE_LIMIT = 4096;
/** The server's `limits.maxPortRange` when its config does not set it. */
export const DEFAULT_MAX_PORT_RANGE = 256;

export interface PortSpan {
  readonly from: number;
  readonly to: number;
}

/** A `remotePort: A-B` app of a group file, which the spec holds as one app per port. */
export interface AppRange extends PortSpan {
  /** Its place in the file's `apps:` list. */
  readonly index: number;
  /** The name written in the file; its apps are `NAME-PORT`. */
  readonly name: string;
}

const RANGE = /^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$/;
const REMOTE_EXPECTED = 'expected a port number (0-65535) or a range such as 6000-6010';
const LOCAL_EXPECTED = 'expected "host:port" or, with a remotePort range, "host:7000-7010"';

/** `A-B` as written (checked later, where the error can name the field and say what is wrong). */
const rangeText = (expected: string) =>
  z
    .string(problem(expected))
    .regex(RANGE, problem(expected))
    .transform((text): PortSpan => {
      const [, from, to] = RANGE.exec(text)!;
      return { from: Number(from), to: Number(to) };
    });

/** `remotePort:` of an app: a port, or a range of ports `A-B`. */
export const remotePortField = z.union([port(), rangeText(REMOTE_EXPECTED)], problem(REMOTE_EXPECTED));

const LOCAL_RANGE = /^\s*(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})-(\d{1,5})\s*$/;

/**
 * `local:` of an app: `host:port`, or `host:A-B` beside a remotePort range. A single target is
 * read by hostPort, so its problems are worded as everywhere else.
 */
export const localField = z
  .string(problem(LOCAL_EXPECTED))
  .regex(/^\s*(?:\[[^\]]+\]|[^:\s]+):\d{1,5}(?:-\d{1,5})?\s*$/, problem(LOCAL_EXPECTED))
  .transform((text, ctx): HostPort | (PortSpan & { host: string }) => {
    const range = LOCAL_RANGE.exec(text);
    if (range !== null) return { host: (range[1] ?? range[2])!, from: Number(range[3]), to: Number(range[4]) };
    const single = hostPort().safeParse(text);
    if (single.success) return single.data;
    ctx.issues.push({ code: 'custom', input: text, message: single.error.issues[0]!.message });
    return z.NEVER;
  })
  .meta({
    description: 'Where the groupclient dials on its own host (host:port, or host:7000-7010 beside a remotePort range); the server never sends it',
    examples: ['127.0.0.1:22'],
  });

type LocalField = z.output<typeof localField>;

/** Where one app of a range dials and listens: its public port and its local target. */
export interface RangePort {
  readonly remotePort: number;
  readonly local: HostPort;
}

/**
 * The ports a range app expands to, or undefined for a single-port app (whose `local` and
 * `remotePort` are returned as they are). Issues are added at the field to change.
 */
export function rangePorts(
  { remotePort, local, type, pool }: { remotePort: number | PortSpan | undefined; local: LocalField; type: string; pool: string | undefined },
  ctx: z.RefinementCtx,
): { single: { remotePort: number | undefined; local: HostPort } } | { ports: RangePort[] } {
  const localSpan = 'from' in local ? local : undefined;
  if (remotePort === undefined || typeof remotePort === 'number') {
    if (localSpan !== undefined) ctx.addIssue({ code: 'custom', path: ['local'], message: 'a local port range needs a remotePort range of the same length' });
    return { single: { remotePort, local: localSpan === undefined ? (local as HostPort) : { host: localSpan.host, port: localSpan.from } } };
  }
  const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
  if (type !== 'tcp' && type !== 'udp') issue('remotePort', `a port range is for tcp and udp apps; an ${type} app is reached by name`);
  if (pool !== undefined) issue('remotePort', "a pooled app has the pool's one port: a port range cannot join a pool");
  const size = remotePort.to - remotePort.from + 1;
  const spanProblem = badSpan(remotePort);
  if (spanProblem !== undefined) issue('remotePort', spanProblem);
  else if (size > PORT_RANGE_LIMIT) issue('remotePort', `a range of ${size} ports; at most ${PORT_RANGE_LIMIT}`);
  if (localSpan === undefined) {
    const { host, port: first } = local as HostPort;
    issue(
      'local',
      `with remotePort ${remotePort.from}-${remotePort.to}, expected a local range of ${size} ports such as "${host}:${first}-${first + size - 1}"`,
    );
  } else {
    const localProblem = badSpan(localSpan);
    if (localProblem !== undefined) issue('local', localProblem);
    else if (localSpan.to - localSpan.from + 1 !== size) {
      issue(
        'local',
        `${localSpan.to - localSpan.from + 1} local ports for ${size} remote ports (${remotePort.from}-${remotePort.to}): the ranges must be the same length`,
      );
    }
  }
  if (spanProblem !== undefined || size > PORT_RANGE_LIMIT || localSpan === undefined || localSpan.to - localSpan.from + 1 !== size) return { ports: [] };
  return {
    ports: Array.from({ length: size }, (_, i) => ({ remotePort: remotePort.from + i, local: { host: localSpan.host, port: localSpan.from + i } })),
  };
}

function badSpan({ from, to }: PortSpan): string | undefined {
  if (from < 1 || to > 65535) return `expected ports from 1 to 65535, got ${from}-${to}`;
  if (from > to) return `a reversed range ${from}-${to}: write ${to}-${from}`;
  return undefined;
}

/**
 * Where app `index` of a spec (ranges expanded) is written in its file: a range's apps all
 * point at the range's entry, and the apps after a range at their own entry.
 */
export function fileAppIndex(ranges: readonly AppRange[] | undefined, index: number): number {
  let shift = 0;
  for (const range of ranges ?? []) {
    const first = range.index + shift;
    const size = range.to - range.from + 1;
    if (index < first) break;
    if (index < first + size) return range.index;
    shift += size - 1;
  }
  return index - shift;
}

/** A field path about a spec's app (`['apps', i, ...]`) as a path in its file, for the file's line and the field's name. */
export function fileFieldPath<Path extends readonly (string | number)[]>(spec: { readonly ranges?: readonly AppRange[] }, path: Path): Path {
  if (path[0] !== 'apps' || typeof path[1] !== 'number' || spec.ranges === undefined) return path;
  return ['apps', fileAppIndex(spec.ranges, path[1]), ...path.slice(2)] as unknown as Path;
}

/** Why a spec's ranges are larger than the server allows (`limits.maxPortRange`), or undefined. */
export function portRangeRefusal(
  spec: { readonly ranges?: readonly AppRange[] },
  maxPortRange: number,
): { path: (string | number)[]; problem: string } | undefined {
  const range = spec.ranges?.find(({ from, to }) => to - from + 1 > maxPortRange);
  if (range === undefined) return undefined;
  return {
    path: ['apps', range.index, 'remotePort'],
    problem: `app "${range.name}": a range of ${range.to - range.from + 1} ports (${range.from}-${range.to}); this server allows at most ${maxPortRange} (limits.maxPortRange)`,
  };
}
