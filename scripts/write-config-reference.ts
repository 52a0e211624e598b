/**
 * Run by `npm run docs`: writes docs/configuration.md from the zod schemas. A test fails while
 * the committed page differs from what this writes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { CONFIGURATION_PAGE, configurationPage } from './config-reference.js';

mkdirSync(dirname(CONFIGURATION_PAGE), { recursive: true });
writeFileSync(CONFIGURATION_PAGE, configurationPage());
