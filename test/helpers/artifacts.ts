import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './paths.js';

/**
 * What the suite leaves for the secret scan (`test/run-suite.ts`): every secret the helpers
 * generated, and every log line the suite produced (CLI child output, in-process server and
 * client events). The directory is git-ignored; the runner empties it before each run.
 */
export const ARTIFACTS_DIR = process.env.NTP_TEST_ARTIFACTS ?? join(REPO_ROOT, 'test-artifacts');
export const SECRETS_FILE = join(ARTIFACTS_DIR, 'secrets.txt');
export const LOGS_DIR = join(ARTIFACTS_DIR, 'logs');

let sinks = 0;

export function recordSecret(secret: string): void {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  appendFileSync(SECRETS_FILE, `${secret}\n`);
}

/** A log file of its own for one process or one in-process component; returns its writer. */
export function logSink(name: string): (line: string) => void {
  mkdirSync(LOGS_DIR, { recursive: true });
  const file = join(LOGS_DIR, `${name.replace(/[^a-zA-Z0-9_.-]/g, '_')}-${process.pid}-${++sinks}.log`);
  return (line) => appendFileSync(file, `${line}\n`);
}
