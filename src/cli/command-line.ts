import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { LogLevel } from '../config/index.js';
import { packageFiles } from '../package-files.js';
import { Logger, parseLogOptions } from './logger.js';
import { EXIT } from './exit-codes.js';

/**
 * The logger of the command being run: plain text until the command line is read, then the
 * one `commandLogger` made (so that a fatal error is written the way the user asked).
 */
let current = new Logger();

export function currentLogger(): Logger {
  return current;
}

export interface CommandLogger {
  logger: Logger;
  /** Sets the logger's level from a config file's `logLevel:`: `--log-level` wins, else `info`. */
  follow(fileLevel: LogLevel | undefined): void;
}

/**
 * `--log-level` and `--log-format` of a parsed command line: the command's logger, now also
 * `currentLogger()`, or undefined after printing the problem with `usage` (exit 2).
 */
export function commandLogger(
  name: string,
  values: { 'log-level'?: string | undefined; 'log-format'?: string | undefined },
  usage: string,
): CommandLogger | undefined {
  const options = parseLogOptions(values);
  if (!options.ok) {
    current.fatal('usage', `${name}: ${options.problem}\n\n${usage}`);
    return undefined;
  }
  const logger = new Logger(options.value);
  current = logger;
  return {
    logger,
    follow: (fileLevel) => {
      logger.level = options.value.level ?? fileLevel ?? 'info';
    },
  };
}

/**
 * Writes a command's own output (usage, version, verify's report) as it is: unlike the
 * lifecycle lines of a running server or client, it carries no timestamp.
 */
export function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** The package's version, read from the package.json that ships beside dist/ (or in the executable). */
export function packageVersion(): string {
  const manifest = JSON.parse(packageFiles().read('package.json').toString('utf8')) as { version?: unknown };
  return typeof manifest.version === 'string' ? manifest.version : 'unknown';
}

/** The subcommand named first on the command line (one of `known`), and the arguments after it. */
export function splitSubcommand<T extends string>(argv: readonly string[], known: readonly T[]): { command: T | undefined; args: string[] } {
  const first = argv[0];
  if (first !== undefined && (known as readonly string[]).includes(first)) return { command: first as T, args: argv.slice(1) };
  return { command: undefined, args: [...argv] };
}

type Options = NonNullable<ParseArgsConfig['options']>;

const STANDARD_OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const satisfies Options;

export type Parsed<O extends Options> =
  | { exit: number }
  | {
      exit?: undefined;
      values: ReturnType<typeof parseArgs<{ options: O & typeof STANDARD_OPTIONS; allowPositionals: true; strict: true }>>['values'];
      positionals: string[];
    };

/**
 * Parses one (sub)command's arguments. `--help` prints `usage` and `--version` the version
 * (both exit 0); a bad argument prints the error with `usage` on stderr (exit 2).
 */
export function parseCommand<O extends Options>(name: string, argv: string[], options: O, usage: string, { maxPositionals = 0 } = {}): Parsed<O> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, ...STANDARD_OPTIONS }, allowPositionals: true, strict: true });
  } catch (error) {
    current.fatal('usage', `${name}: ${argumentProblem(error as Error & { code?: string })}\n\n${usage}`);
    return { exit: EXIT.failed };
  }
  const standard = parsed.values as { help?: boolean; version?: boolean };
  if (standard.help) {
    print(usage);
    return { exit: EXIT.ok };
  }
  if (standard.version) {
    print(`${name.split(' ')[0]} ${packageVersion()}`);
    return { exit: EXIT.ok };
  }
  if (parsed.positionals.length > maxPositionals) {
    current.fatal('usage', `${name}: unexpected argument ${JSON.stringify(parsed.positionals[maxPositionals])}\n\n${usage}`);
    return { exit: EXIT.failed };
  }
  return { values: parsed.values as never, positionals: parsed.positionals };
}

/** parseArgs' refusal in our words: which option, and what is wrong with it (its usage follows). */
function argumentProblem(error: Error & { code?: string }): string {
  // parseArgs names the option in quotes, "'--config <value>'" or "'-h, --help'": its last name.
  const option =
    /'([^']*)'/
      .exec(error.message)?.[1]
      ?.split(/[ ,]+/)
      .find((word) => word.startsWith('--')) ?? /'(-[^']*)'/.exec(error.message)?.[1];
  if (option === undefined) return error.message;
  if (error.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option ${option} (the options are below)`;
  if (error.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    return /argument missing/.test(error.message) ? `${option} needs a value` : `${option} takes no value (it is a switch)`;
  }
  return error.message;
}
