import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Where the files the package ships beside dist/ come from at run time (package.json for
 * `--version`, the dashboard, the systemd units), each named by its path from the package root.
 */
export interface PackageFiles {
  /** The file's bytes; throws when the package has no such file. */
  read(path: string): Buffer;
  /** The package's folder on disk; undefined when there is none (a single executable). */
  readonly root: string | undefined;
}

// This module runs from dist/src/: the package root is two folders up, in a clone and in an
// installed package alike. Resolved on first use only: bundled into a single executable,
// import.meta is empty, and a module-level fileURLToPath would throw before main runs.
let root: string | undefined;
const onDisk: PackageFiles = {
  read: (path) => readFileSync(join(onDisk.root!, path)),
  get root() {
    return (root ??= fileURLToPath(new URL('../../', import.meta.url)));
  },
};

let current: PackageFiles = onDisk;

/** The package's files as this copy of the program finds them. */
export function packageFiles(): PackageFiles {
  return current;
}

/**
 * Replaces where package files are read from. A single executable calls it (src/sea/) before
 * any CLI module is evaluated, since some read their files at load.
 */
export function usePackageFiles(files: PackageFiles): void {
  current = files;
}
