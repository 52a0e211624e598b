/**
 * Run by `npm run build`: writes schema/*.schema.json from the zod schemas, so that the
 * published files can never drift from what the loader and the codec accept.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configJsonSchema, SCHEMA_DIR, SCHEMA_FILES, toJsonSchema, type ConfigKind } from '../src/config/json-schema.js';
import { messageSchema } from '../src/protocol/index.js';

const schemas: Record<string, Record<string, unknown>> = {
  'messages.schema.json': { title: 'Wire messages of the common port', ...toJsonSchema(messageSchema) },
};
for (const [kind, file] of Object.entries(SCHEMA_FILES) as [ConfigKind, string][]) schemas[file] = configJsonSchema(kind);

mkdirSync(SCHEMA_DIR, { recursive: true });
for (const [file, schema] of Object.entries(schemas)) writeFileSync(join(SCHEMA_DIR, file), `${JSON.stringify(schema, null, 2)}\n`);
