/**
 * Injected first into a single executable's bundle (scripts/build-sea.ts): from here on the
 * package's files are the copies embedded as SEA assets, keyed by their path from the package
 * root, since no package lies beside the executable.
 */
import { getAsset } from 'node:sea';
import { usePackageFiles } from '../package-files.js';

usePackageFiles({
  read(path) {
    try {
      return Buffer.from(getAsset(path));
    } catch (error) {
      throw Object.assign(new Error(`${path} is not embedded in this executable`, { cause: error }), { code: 'ENOENT' });
    }
  },
  root: undefined,
});
