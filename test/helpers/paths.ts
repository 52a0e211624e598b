import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Where things are, for a test file at any depth under test/ (the tiers unit/, integration/ and
 * e2e/ nest differently): the compiled tree (dist/, what the tests run and spawn) and the source
 * tree (config/, contrib/, fixtures and other files the build does not copy).
 */
export const DIST_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const REPO_ROOT = join(DIST_ROOT, '..');
/** The config fixtures, valid/ and invalid/ (they stay in the source tree). */
export const CONFIG_FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'config');
