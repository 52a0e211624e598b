import createDebug from 'debug';
import { readFile, stat } from 'node:fs/promises';
import { writeFileAtomic } from '../server/index.js';

const debug = createDebug('ntp:admin:traffic-history');

const MINUTE_MS = 60_000;
/** One-minute points for this long. */
export const HISTORY_MINUTES = 24 * 60;
/** Daily totals for this many days (today included). */
export const HISTORY_DAYS = 30;
/** Apps with a history; traffic of more is not recorded (a registry of thousands would make the file large). */
export const MAX_HISTORY_APPS = 256;
/**
 * The file is refused past this size when read (256 apps × 1,470 points at most, written
 * compactly, stay under it).
 */
export const MAX_HISTORY_FILE_BYTES = 16 * 1024 * 1024;

/** `[start ms, bytes in, bytes out]`: a minute, or a local day from midnight. */
export type HistoryPoint = [number, number, number];

export interface AppHistory {
  minutes: HistoryPoint[];
  days: HistoryPoint[];
}

export interface TrafficHistoryOptions {
  /** Where the history survives a restart; none: kept in memory only. */
  file?: string;
  now?: () => number;
}

function dayStart(ms: number): number {
  return new Date(ms).setHours(0, 0, 0, 0);
}

/**
 * Bytes in and out per app over time, kept by the server so that a freshly opened dashboard
 * shows the past: one-minute points for 24 h and daily totals for 30 days, bounded per app
 * and in apps, saved atomically to a small file and read back at start.
 */
export class TrafficHistory {
  private readonly apps = new Map<string, AppHistory>();
  private readonly now: () => number;
  private dirty = false;
  private saving: Promise<void> = Promise.resolve();

  constructor(private readonly options: TrafficHistoryOptions = {}) {
    this.now = options.now ?? Date.now;
  }

  get file(): string | undefined {
    return this.options.file;
  }

  /** Reads the file, if any; a missing file is a first start, a bad one is said and set aside. */
  async load(): Promise<void> {
    const { file } = this.options;
    if (file === undefined) return;
    try {
      if ((await stat(file)).size > MAX_HISTORY_FILE_BYTES) throw new Error(`larger than ${MAX_HISTORY_FILE_BYTES} bytes`);
      const parsed = JSON.parse(await readFile(file, 'utf8')) as unknown;
      const apps = (parsed as { apps?: unknown } | null)?.apps;
      if (typeof apps !== 'object' || apps === null) throw new Error('no apps object');
      for (const [key, value] of Object.entries(apps)) {
        if (this.apps.size >= MAX_HISTORY_APPS) break;
        const history = value as Partial<AppHistory>;
        this.apps.set(key, { minutes: points(history.minutes, HISTORY_MINUTES), days: points(history.days, HISTORY_DAYS) });
      }
      this.prune();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      debug('traffic history %s not read (%s): starting empty', file, (error as Error).message);
      this.apps.clear();
    }
  }

  /** Counts `bytesIn` and `bytesOut` of group/app now. */
  add(group: string, app: string, bytesIn: number, bytesOut: number): void {
    if (bytesIn === 0 && bytesOut === 0) return;
    const key = `${group}/${app}`;
    let history = this.apps.get(key);
    if (history === undefined) {
      if (this.apps.size >= MAX_HISTORY_APPS) return;
      this.apps.set(key, (history = { minutes: [], days: [] }));
    }
    const now = this.now();
    addTo(history.minutes, now - (now % MINUTE_MS), bytesIn, bytesOut, HISTORY_MINUTES);
    addTo(history.days, dayStart(now), bytesIn, bytesOut, HISTORY_DAYS);
    this.dirty = true;
  }

  /** Forgets a removed group's apps (all of them, or those not in `keepApps`). */
  forget(group: string, keepApps?: ReadonlySet<string>): void {
    for (const key of [...this.apps.keys()]) {
      if (!key.startsWith(`${group}/`) || keepApps?.has(key.slice(group.length + 1))) continue;
      this.apps.delete(key);
      this.dirty = true;
    }
  }

  /** One app's points, the last 24 h of minutes and 30 days, oldest first. */
  of(group: string, app: string): AppHistory {
    this.prune();
    const history = this.apps.get(`${group}/${app}`);
    return { minutes: [...(history?.minutes ?? [])], days: [...(history?.days ?? [])] };
  }

  /** Bytes of group/app since local midnight. */
  today(group: string, app: string): { bytesIn: number; bytesOut: number } {
    const last = this.apps.get(`${group}/${app}`)?.days.at(-1);
    return last !== undefined && last[0] === dayStart(this.now()) ? { bytesIn: last[1], bytesOut: last[2] } : { bytesIn: 0, bytesOut: 0 };
  }

  /** Writes the file (atomically) if anything changed; saves never overlap. */
  save(): Promise<void> {
    const { file } = this.options;
    if (file === undefined || !this.dirty) return this.saving;
    this.dirty = false;
    this.prune();
    const text = JSON.stringify({ version: 1, savedAt: new Date(this.now()).toISOString(), apps: Object.fromEntries(this.apps) });
    this.saving = this.saving.then(() =>
      writeFileAtomic(file, text).catch((error: unknown) => {
        this.dirty = true;
        debug('traffic history not saved to %s: %s', file, (error as Error).message);
      }),
    );
    return this.saving;
  }

  private prune(): void {
    const now = this.now();
    const oldestMinute = now - (now % MINUTE_MS) - (HISTORY_MINUTES - 1) * MINUTE_MS;
    const oldestDay = dayStart(now - (HISTORY_DAYS - 1) * 86_400_000);
    for (const history of this.apps.values()) {
      while (history.minutes.length > 0 && history.minutes[0]![0] < oldestMinute) history.minutes.shift();
      while (history.days.length > 0 && history.days[0]![0] < oldestDay) history.days.shift();
    }
  }
}

function addTo(series: HistoryPoint[], start: number, bytesIn: number, bytesOut: number, max: number): void {
  const last = series.at(-1);
  if (last !== undefined && last[0] === start) {
    last[1] += bytesIn;
    last[2] += bytesOut;
    return;
  }
  series.push([start, bytesIn, bytesOut]);
  if (series.length > max) series.shift();
}

/** Points read back from the file: well-formed ones only, in order, at most `max`. */
function points(value: unknown, max: number): HistoryPoint[] {
  if (!Array.isArray(value)) return [];
  const good = value.filter(
    (point): point is HistoryPoint => Array.isArray(point) && point.length === 3 && point.every((n) => typeof n === 'number' && Number.isFinite(n) && n >= 0),
  );
  return good.sort((a, b) => a[0] - b[0]).slice(-max);
}
