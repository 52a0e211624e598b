import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError } from './errors.js';
import { Secret } from './secret.js';
import type { YamlFile } from './yaml-file.js';

export const MIN_SECRET_LENGTH = 16;
/** A secret is a line of text; a file much larger than that is not a secret file. */
export const MAX_SECRET_FILE_BYTES = 4096;

type Path = (string | number)[];

/** `${VAR}` anywhere in the value is replaced from the environment; a missing VAR is an error. */
export function parseSecret(yaml: YamlFile, raw: unknown, env: NodeJS.ProcessEnv, path: Path = ['secret']): Secret {
  if (typeof raw !== 'string' || raw.length === 0) {
    throw yaml.error(path, 'expected a secret (a literal, or ${VAR} to read it from the environment)');
  }
  const value = raw.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, variable: string) => {
    const found = env[variable];
    if (found === undefined || found === '') {
      throw yaml.error(path, `environment variable ${variable} is not set`);
    }
    return found;
  });
  return checkedSecret(yaml, path, value, '');
}

/**
 * `secretFile: PATH` (relative to `baseDir`, the group file's directory): the file's content,
 * trimmed. The file must be private to its owner (mode 600 or stricter), since whoever reads
 * it can log in as the group; a laxer file is refused, not merely warned about, because
 * nothing forces a secret file to be shared the way a group file may be.
 */
export function readSecretFile(yaml: YamlFile, raw: unknown, baseDir: string, path: Path = ['secretFile']): { secret: Secret; file: string } {
  if (typeof raw !== 'string' || raw.trim() === '') throw yaml.error(path, 'expected the path of a file holding the secret');
  const file = resolve(baseDir, raw.trim());
  let fd: number | undefined;
  let text: string;
  try {
    // Non-blocking: a FIFO must not hang the reload.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw yaml.error(path, `${file} is not a regular file`);
    if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
      throw yaml.error(path, `${file} has mode ${(stat.mode & 0o777).toString(8)}: a secret file must be readable by its owner only (chmod 600 ${file})`);
    }
    if (stat.size > MAX_SECRET_FILE_BYTES) throw yaml.error(path, `${file} is larger than ${MAX_SECRET_FILE_BYTES} bytes: not a secret file`);
    const buffer = Buffer.alloc(MAX_SECRET_FILE_BYTES);
    const length = readSync(fd, buffer, 0, buffer.length, 0);
    text = buffer.subarray(0, length).toString('utf8');
    buffer.fill(0);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw yaml.error(path, `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  return { secret: checkedSecret(yaml, path, text.trim(), ` (in ${file})`), file };
}

function checkedSecret(yaml: YamlFile, path: Path, value: string, where: string): Secret {
  if (value.length < MIN_SECRET_LENGTH) {
    // Never quote the value: the error may end up in a log.
    throw yaml.error(path, `too short${where}: use at least ${MIN_SECRET_LENGTH} characters`);
  }
  return new Secret(value);
}
