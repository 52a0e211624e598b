import { LOG_LEVELS, parseLogLevel, type LogLevel, type Parsed } from '../config/index.js';

export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/**
 * One line's worth: its severity, what happened (`event`, a stable name a log pipeline can
 * match on), the human sentence, and the facts behind it (`fields`, written only as json).
 * Never put a secret in any of them.
 */
export interface LogEntry {
  level: LogLevel;
  event: string;
  text: string;
  fields?: Record<string, unknown>;
}

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export interface LoggerOptions {
  format?: LogFormat;
  level?: LogLevel;
  /** Where lines go (default: stdout) and where fatal errors go (default: stderr). */
  out?: (line: string) => void;
  err?: (line: string) => void;
}

/**
 * The lines both CLIs print: `text` is one human sentence per lifecycle event after the
 * time of day, `json` one object per line with an ISO timestamp, the level, the event name
 * and its fields, for log pipelines. `DEBUG=ntp:*` tracing is separate and unaffected.
 */
export class Logger {
  readonly format: LogFormat;
  level: LogLevel;
  private readonly out: (line: string) => void;
  private readonly err: (line: string) => void;

  constructor({ format = 'text', level = 'info', out = (line) => process.stdout.write(line), err = (line) => process.stderr.write(line) }: LoggerOptions = {}) {
    this.format = format;
    this.level = level;
    this.out = out;
    this.err = err;
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] <= RANK[this.level];
  }

  log(entry: LogEntry | undefined): void {
    if (entry === undefined || !this.enabled(entry.level)) return;
    const now = new Date();
    this.out(this.format === 'json' ? jsonLine(now, entry) : `${now.toISOString().slice(11, 19)} ${entry.text}\n`);
  }

  error(event: string, text: string, fields?: Record<string, unknown>): void {
    this.log({ level: 'error', event, text, ...(fields ? { fields } : {}) });
  }

  warn(event: string, text: string, fields?: Record<string, unknown>): void {
    this.log({ level: 'warn', event, text, ...(fields ? { fields } : {}) });
  }

  info(event: string, text: string, fields?: Record<string, unknown>): void {
    this.log({ level: 'info', event, text, ...(fields ? { fields } : {}) });
  }

  /**
   * A failure that ends the process (bad usage, bad config, an unverifiable server): on
   * stderr whatever the level, so that a service manager's journal always shows why.
   */
  fatal(event: string, text: string, fields?: Record<string, unknown>): void {
    this.err(this.format === 'json' ? jsonLine(new Date(), { level: 'error', event, text, ...(fields ? { fields } : {}) }) : `${text}\n`);
  }
}

function jsonLine(now: Date, { level, event, text, fields }: LogEntry): string {
  // The fields first: a field can never overwrite the four keys every line carries.
  return `${JSON.stringify({ ...fields, time: now.toISOString(), level, event, msg: text })}\n`;
}

/** A component event as a log entry: its `type` is the event name, its other keys the fields. */
export function eventEntry<E extends { type: string }>(event: E, level: LogLevel, text: string): LogEntry {
  const { type, ...fields } = event;
  return { level, event: type, text, fields };
}

/** The options both CLIs accept, for `parseArgs`. */
export const LOG_OPTIONS = {
  'log-level': { type: 'string' },
  'log-format': { type: 'string' },
} as const;

export const LOG_USAGE = `  --log-level LEVEL  ${LOG_LEVELS.join(' | ')} (default: logLevel: in the file, else info)
  --log-format FMT   text (default) | json: one object per line (time, level, event, fields)`;

export interface LogOptions {
  /** From `--log-level`; undefined leaves it to the config file. */
  level?: LogLevel;
  format: LogFormat;
}

/** `--log-level` and `--log-format` as given on the command line. */
export function parseLogOptions(values: { 'log-level'?: string | undefined; 'log-format'?: string | undefined }): Parsed<LogOptions> {
  const format = values['log-format'] ?? 'text';
  if (!(LOG_FORMATS as readonly string[]).includes(format)) {
    return { ok: false, problem: `--log-format: expected one of ${LOG_FORMATS.join(', ')}, got ${JSON.stringify(format)}` };
  }
  if (values['log-level'] === undefined) return { ok: true, value: { format: format as LogFormat } };
  const level = parseLogLevel(values['log-level']);
  if (!level.ok) return { ok: false, problem: `--log-level: ${level.problem}` };
  return { ok: true, value: { format: format as LogFormat, level: level.value } };
}
