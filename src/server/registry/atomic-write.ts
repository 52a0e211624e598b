import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Test seams: run between the fsynced temp file and the rename (e.g. to inject a crash). */
export interface AtomicWriteHooks {
  beforeRename?: (tempFile: string, file: string) => void | Promise<void>;
}

/**
 * Replaces `file` so that a reader (or a crash) sees either the old content or the new, never
 * a half-written file: write a temp file in the same directory, fsync it, rename it over the
 * target, fsync the directory. The temp name does not end in .yaml, so the groups watcher and
 * `loadGroupDirectory` never pick it up. Mode 0600: group files hold secrets.
 */
export async function writeFileAtomic(file: string, text: string, hooks: AtomicWriteHooks = {}): Promise<void> {
  const dir = dirname(file);
  const tempFile = join(dir, `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(tempFile, 'wx', 0o600);
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await hooks.beforeRename?.(tempFile, file);
    await rename(tempFile, file);
  } catch (error) {
    await rm(tempFile, { force: true });
    throw error;
  }
  await syncDirectory(dir);
}

/** Deletes `file` and makes the removal durable. */
export async function removeFileDurably(file: string): Promise<void> {
  await rm(file);
  await syncDirectory(dirname(file));
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic there.
  } finally {
    await handle.close();
  }
}
