import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { Secret } from './secret.js';

export const MIN_SECRET_LENGTH = 16;
/** A secret is a line of text; a file much larger than that is not a secret file. */
export const MAX_SECRET_FILE_BYTES = 4096;

const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
// Never quote a secret's value in a message: the error may end up in a log.
const SECRET_EXPECTED = 'expected a secret (a literal, or ${VAR} to read it from the environment)';

/** A secret as written in a file; `literal` when it is written in the file itself (not `${VAR}`). */
export interface SecretValue {
  readonly secret: Secret;
  readonly literal: boolean;
}

/**
 * `${VAR}` anywhere in the value is replaced from `env`; a missing or empty VAR is an issue.
 * `minLength`: group secrets and tokens need MIN_SECRET_LENGTH; a basic-auth password is what
 * its users can type.
 */
export function secretValue(env: NodeJS.ProcessEnv, minLength = MIN_SECRET_LENGTH) {
  return z
    .string(SECRET_EXPECTED)
    .min(1, SECRET_EXPECTED)
    .transform((raw, ctx): SecretValue => {
      let unset: string | undefined;
      const value = raw.replace(VARIABLE, (_, variable: string) => {
        const found = env[variable];
        if (found === undefined || found === '') unset ??= variable;
        return found ?? '';
      });
      const problem = unset !== undefined ? `environment variable ${unset} is not set` : tooShort(value, '', minLength);
      if (problem !== undefined) {
        ctx.addIssue({ code: 'custom', message: problem });
        return z.NEVER;
      }
      return { secret: new Secret(value), literal: !raw.includes('${') };
    })
    .meta({ description: `A literal of ${minLength}+ characters, or \${VAR} to read it from the environment` });
}

const SECRET_FILE_EXPECTED = 'expected the path of a file holding the secret';

/** `secretFile: PATH` as written; read by `secretFromFile` once the file's other fields agree. */
export const secretFilePath = z
  .string(SECRET_FILE_EXPECTED)
  .refine((raw) => raw.trim() !== '', SECRET_FILE_EXPECTED)
  .meta({ description: 'A file holding the secret (relative to this file, mode 600), re-read at each reload' });

/**
 * The secret in `raw` (relative to `baseDir`, the group file's directory): the file's content,
 * trimmed, or an issue at `path`. The file must be private to its owner (mode 600 or stricter),
 * since whoever reads it can log in as the group; a laxer file is refused, not merely warned
 * about, because nothing forces a secret file to be shared the way a group file may be.
 */
export function secretFromFile(raw: string, baseDir: string, ctx: z.RefinementCtx, path: (string | number)[]): (SecretValue & { file: string }) | undefined {
  const file = resolve(baseDir, raw.trim());
  const text = readSecretFile(file);
  const problem = text.ok ? tooShort(text.value, ` (in ${file})`) : text.problem;
  if (problem !== undefined) {
    ctx.addIssue({ code: 'custom', path, message: problem });
    return undefined;
  }
  return { secret: new Secret(text.ok ? text.value : ''), literal: false, file };
}

function readSecretFile(file: string): { ok: true; value: string } | { ok: false; problem: string } {
  let fd: number | undefined;
  try {
    // Non-blocking: a FIFO must not hang the reload.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    const stat = fstatSync(fd);
    if (!stat.isFile()) return { ok: false, problem: `${file} is not a regular file` };
    if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
      return {
        ok: false,
        problem: `${file} has mode ${(stat.mode & 0o777).toString(8)}: a secret file must be readable by its owner only (chmod 600 ${file})`,
      };
    }
    if (stat.size > MAX_SECRET_FILE_BYTES) return { ok: false, problem: `${file} is larger than ${MAX_SECRET_FILE_BYTES} bytes: not a secret file` };
    const buffer = Buffer.alloc(MAX_SECRET_FILE_BYTES);
    const length = readSync(fd, buffer, 0, buffer.length, 0);
    const text = buffer.subarray(0, length).toString('utf8');
    buffer.fill(0);
    return { ok: true, value: text.trim() };
  } catch (error) {
    return { ok: false, problem: `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}` };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function tooShort(value: string, where: string, minLength = MIN_SECRET_LENGTH): string | undefined {
  return value.length < minLength ? `too short${where}: use at least ${minLength} characters` : undefined;
}
