import { statSync } from 'node:fs';

/**
 * A warning when a file holding a secret (a group file with a literal secret, a TLS key) can
 * be read by users other than its owner, or undefined. Advice only: the file still loads,
 * because refusing would break installs where a group shares the file on purpose.
 */
export function permissionWarning(file: string, what: string): string | undefined {
  if (process.platform === 'win32') return undefined;
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch {
    return undefined; // unreadable files are reported where they are read
  }
  if ((mode & 0o044) === 0) return undefined;
  return `${file} holds ${what} and is readable by ${mode & 0o004 ? 'every user' : 'its group'} (mode ${(mode & 0o777).toString(8)}); run chmod 600 ${file}`;
}
