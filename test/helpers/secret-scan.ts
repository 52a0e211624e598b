import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

export interface SecretScan {
  secrets: number;
  files: number;
  lines: number;
  /** Where a secret was found: file and line number, and which secret (by index, never by value). */
  leaks: { file: string; line: number; secret: number }[];
}

/**
 * Greps every log file under `logsDir` (and `extraFiles`, e.g. the runner's own report) for
 * every secret listed in `secretsFile` (one a line). Leaks are reported by position and
 * secret index, so the report cannot leak them again.
 */
export function scanForSecrets(secretsFile: string, logsDir: string, extraFiles: string[] = []): SecretScan {
  const secrets = existsSync(secretsFile)
    ? [
        ...new Set(
          readFileSync(secretsFile, 'utf8')
            .split('\n')
            .filter((line) => line.length > 0),
        ),
      ]
    : [];
  const logs = existsSync(logsDir)
    ? readdirSync(logsDir)
        .filter((file) => file.endsWith('.log'))
        .sort()
        .map((file) => join(logsDir, file))
    : [];
  const files = [...logs, ...extraFiles.filter((file) => existsSync(file))];
  const scan: SecretScan = { secrets: secrets.length, files: files.length, lines: 0, leaks: [] };
  for (const file of files) {
    const lines = readFileSync(file, 'utf8').split('\n');
    scan.lines += lines.length;
    lines.forEach((text, i) => {
      secrets.forEach((secret, index) => {
        if (text.includes(secret)) scan.leaks.push({ file: basename(file), line: i + 1, secret: index + 1 });
      });
    });
  }
  return scan;
}
