import { dirname, join, relative, sep } from 'node:path';
import { z } from 'zod';
import { packageFiles } from '../package-files.js';
import { groupFileSchema } from './group-file.js';
import { serverConfigSchema } from './server-config.js';

/**
 * The JSON Schema of each file kind, generated from the same zod schemas that validate the
 * files, so that an editor (yaml-language-server) completes and checks what the loader
 * accepts. Input side: what a person writes (`10s`, `host:port`), not what the code reads.
 * What needs the file system or the environment (a secret file's mode, `${VAR}` being set, a
 * group name matching its file name) is checked only by the loader.
 */
export type ConfigKind = 'commonserver' | 'group';

export const SCHEMA_FILES: Readonly<Record<ConfigKind, string>> = Object.freeze({
  commonserver: 'commonserver.schema.json',
  group: 'group.schema.json',
});

/** `schema/` at the package's top level; a single executable has none (see schemaComment). */
export const SCHEMA_DIR = join(packageFiles().root ?? '', 'schema');

/** Adds to each node what the published schema leaves out (the configuration reference's defaults in their output form). */
export type JsonSchemaAnnotator = NonNullable<Parameters<typeof z.toJSONSchema>[1]>['override'];

export function configJsonSchema(kind: ConfigKind, annotate?: JsonSchemaAnnotator): Record<string, unknown> {
  // The context only feeds transforms, which the input-side JSON Schema does not run.
  const schema =
    kind === 'commonserver' ? serverConfigSchema({ file: 'commonserver.yaml', env: {} }) : groupFileSchema({ file: 'group.yaml', env: {}, baseDir: '.' });
  return toJsonSchema(schema, annotate);
}

export function toJsonSchema(schema: z.ZodType, annotate?: JsonSchemaAnnotator): Record<string, unknown> {
  return z.toJSONSchema(schema, { io: 'input', target: 'draft-2020-12', ...(annotate ? { override: annotate } : {}) }) as Record<string, unknown>;
}

/**
 * The first line of a YAML file of `kind` written to `file`: where editors find its schema,
 * relative to the file so that it holds wherever the package is installed.
 */
export function schemaComment(kind: ConfigKind, file: string): string {
  // A single executable has no schema/ on disk to point at: the line says where to get one.
  if (packageFiles().root === undefined) return `# JSON Schema for editors: schema/${SCHEMA_FILES[kind]} in the npm package`;
  const path = relative(dirname(file), join(SCHEMA_DIR, SCHEMA_FILES[kind])).split(sep).join('/');
  return `# yaml-language-server: $schema=${path}`;
}
