/**
 * docs/configuration.md, written from the zod schemas through their JSON Schema (the same one
 * editors get), so that the page cannot drift from what the loader accepts. What the published
 * schema leaves out is added here: defaults of transformed values (a duration's default is
 * milliseconds inside) and examples on them. Reloadability comes from the tables that the
 * reload itself reads (src/config/spec-changes.ts).
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { z } from 'zod';
import {
  configJsonSchema,
  duration,
  formatDuration,
  reloadEffect,
  SCHEMA_FILES,
  SERVER_CONFIG_EFFECT,
  type ConfigKind,
  type FieldEffect,
} from '../src/config/index.js';

/** docs/configuration.md at the repository's top level (this module runs from dist/scripts/). */
export const CONFIGURATION_PAGE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'configuration.md');

/** A JSON Schema node, as far as the page reads it. */
interface SchemaNode {
  type?: string;
  title?: string;
  description?: string;
  default?: unknown;
  examples?: unknown[];
  enum?: unknown[];
  const?: unknown;
  minimum?: number;
  maximum?: number;
  properties?: Record<string, SchemaNode>;
  required?: string[];
  additionalProperties?: SchemaNode | boolean;
  propertyNames?: SchemaNode;
  items?: SchemaNode;
  anyOf?: SchemaNode[];
  /** Set by the annotator: the value is a duration (`10s`). */
  'x-duration'?: true;
  /** Set by the annotator: the default of a transformed value, in its output form. */
  'x-default'?: unknown;
}

/** One row of the page: a field, written as a person writes its path. */
export interface FieldRow {
  /** `heartbeat.interval`, `apps[].udp.maxSessions`, `pools.<name>.balance`. */
  readonly path: string;
  readonly type: string;
  readonly required: boolean;
  /** As written in the file (`10s`), or undefined. */
  readonly default?: string;
  readonly example?: string;
  readonly description?: string;
  readonly reload: string;
}

/** A section of a file: its fields, and a short example of it. */
export interface SectionReference {
  /** The top-level field, or undefined for the file's own scalar fields. */
  readonly name?: string;
  readonly rows: readonly FieldRow[];
  /** YAML; undefined when the schema gives nothing to show. */
  readonly example?: string;
  /** The schema the example must satisfy, and the example as data (tests validate one by the other). */
  readonly schema: Record<string, unknown>;
  readonly exampleValue?: unknown;
}

export interface FileReference {
  readonly kind: ConfigKind;
  readonly sections: readonly SectionReference[];
}

/** What the page calls each file kind, and how a reload treats it. A new kind does not compile until it is named here. */
const FILES: Readonly<Record<ConfigKind, { heading: string; intro: string; effect: (path: readonly string[]) => FieldEffect | undefined }>> = {
  commonserver: {
    heading: 'commonserver.yaml',
    intro:
      'The server config. `commonserver --config FILE` reads it once, at start: every field applies when the commonserver restarts. ' +
      'Paths in it are relative to the file. `commonserver verify` checks it without starting anything.',
    effect: () => SERVER_CONFIG_EFFECT,
  },
  group: {
    heading: 'Group file and host file',
    intro:
      "One file per group. The server's registry reads `<groups>/<name>.yaml`; the host's groupclient reads its own copy (the host file, any file name). " +
      'Both ends reload it when it changes, on SIGHUP and on `groupclient reload`; the Reload column says when each change applies on each end. ' +
      'A file that does not load is reported and the last good version stays. `groupclient verify` and `commonserver verify` check it.',
    effect: reloadEffect,
  },
};

/** The kind's schema with what the published one leaves out for transformed values. */
function annotatedSchema(kind: ConfigKind): SchemaNode {
  return configJsonSchema(kind, ({ zodSchema, jsonSchema }) => {
    const node = jsonSchema as SchemaNode;
    if (isDuration(zodSchema)) node['x-duration'] = true;
    const def = zodSchema._zod.def;
    if ((def.type === 'default' || def.type === 'prefault') && node.default === undefined) node['x-default'] = def.defaultValue;
    const examples = z.globalRegistry.get(zodSchema)?.examples;
    if (node.examples === undefined && Array.isArray(examples)) node.examples = examples;
  }) as SchemaNode;
}

/** `duration`, or a schema made from it (`duration.refine(...)`, `.default(...)`, `.optional()`). */
function isDuration(schema: z.core.$ZodType): boolean {
  for (let at: z.core.$ZodType | undefined = schema; at !== undefined;) {
    if (at === (duration as unknown)) return true;
    const def = at._zod.def as { innerType?: z.core.$ZodType };
    at = at._zod.parent ?? def.innerType;
  }
  return false;
}

export function fileReference(kind: ConfigKind): FileReference {
  const root = annotatedSchema(kind);
  const effect = (path: readonly string[]): string => {
    const found = FILES[kind].effect(path);
    if (found === undefined) throw new Error(`${kind} field ${path.join('.')}: say how a reload applies it in src/config/spec-changes.ts`);
    return describeEffect(found);
  };
  const top: FieldRow[] = [];
  const sections: SectionReference[] = [];
  for (const [name, node] of Object.entries(root.properties ?? {})) {
    const required = root.required?.includes(name) ?? false;
    if (isSection(node)) {
      const rows: FieldRow[] = [];
      walk(node, [name], name, required, rows, effect);
      const value = exampleOf(node);
      sections.push({
        name,
        rows,
        schema: node as Record<string, unknown>,
        ...(value === undefined ? {} : { exampleValue: value, example: stringify({ [name]: value }) }),
      });
    } else walk(node, [name], name, required, top, effect);
  }
  const scalars = Object.fromEntries(Object.keys(root.properties ?? {}).flatMap((name) => scalarExample(root, name)));
  const topSchema = { type: 'object', properties: Object.fromEntries(Object.keys(scalars).map((name) => [name, root.properties![name]])) };
  return {
    kind,
    sections: [
      { rows: top, schema: topSchema, ...(Object.keys(scalars).length === 0 ? {} : { exampleValue: scalars, example: stringify(scalars) }) },
      ...sections,
    ],
  };
}

function scalarExample(root: SchemaNode, name: string): [string, unknown][] {
  const node = root.properties![name]!;
  if (isSection(node)) return [];
  const value = exampleOf(node);
  return value === undefined ? [] : [[name, value]];
}

/** A section: a mapping, a map of names to mappings, or a list of mappings (in any of its forms). */
function isSection(node: SchemaNode): boolean {
  return children(node).length > 0;
}

/** The nodes below `node` with the path segment each adds (`[]` for a list item, `<name>` for a map entry). */
function children(node: SchemaNode): [segment: string | undefined, child: SchemaNode, required: boolean][] {
  const found: [string | undefined, SchemaNode, boolean][] = [];
  for (const [name, child] of Object.entries(node.properties ?? {})) found.push([name, child, node.required?.includes(name) ?? false]);
  if (typeof node.additionalProperties === 'object' && node.propertyNames !== undefined) found.push(['<name>', node.additionalProperties, false]);
  if (node.items !== undefined && children(node.items).length > 0) found.push([undefined, node.items, false]);
  for (const branch of node.anyOf ?? []) if (children(branch).length > 0) found.push([undefined, branch, false]);
  return found;
}

function walk(node: SchemaNode, path: string[], shown: string, required: boolean, rows: FieldRow[], effect: (path: readonly string[]) => string): void {
  const example = node.examples?.[0];
  const fallback = defaultOf(node);
  rows.push({
    path: shown,
    type: typeOf(node),
    required,
    ...(fallback === undefined ? {} : { default: inline(fallback) }),
    ...(example === undefined ? {} : { example: inline(example) }),
    ...(node.description === undefined ? {} : { description: node.description }),
    reload: effect(path),
  });
  for (const [segment, child, childRequired] of children(node)) {
    if (segment === undefined) {
      // A list item or another form of the same field: its fields sit under the same name.
      const itemShown = node.items === child ? `${shown}[]` : shown;
      for (const [name, grandchild, grandRequired] of children(child))
        if (name !== undefined) walk(grandchild, [...path, name], `${itemShown}.${name}`, grandRequired, rows, effect);
      continue;
    }
    walk(child, segment === '<name>' ? path : [...path, segment], `${shown}.${segment}`, childRequired, rows, effect);
  }
}

/** The default as a person writes it (`10s`, not 10000); undefined for none, or an empty section. */
function defaultOf(node: SchemaNode): unknown {
  const value = node.default ?? node['x-default'];
  if (value === undefined || (typeof value === 'object' && value !== null && Object.keys(value).length === 0)) return undefined;
  return node['x-duration'] && typeof value === 'number' ? formatDuration(value) : value;
}

/** A value for the section's example: the field's own example, its default, or one built from its fields. */
function exampleOf(node: SchemaNode): unknown {
  if (node.examples?.[0] !== undefined) return node.examples[0];
  const fallback = defaultOf(node);
  if (fallback !== undefined) return fallback;
  if (node.properties !== undefined) {
    // An optional section is left out: its fields may only make sense with others (healthCheck with pool).
    const shown = Object.entries(node.properties).filter(([name, child]) => !isSection(child) || (node.required?.includes(name) ?? false));
    const value = Object.fromEntries(shown.flatMap(([name, child]) => definedEntry(name, exampleOf(child))));
    return Object.keys(value).length === 0 ? undefined : value;
  }
  if (typeof node.additionalProperties === 'object') {
    const entry = exampleOf(node.additionalProperties);
    return entry === undefined ? undefined : { [String(node.propertyNames?.examples?.[0] ?? 'example')]: entry };
  }
  if (node.items !== undefined) {
    const item = exampleOf(node.items);
    return item === undefined ? undefined : [item];
  }
  for (const branch of node.anyOf ?? []) {
    const value = exampleOf(branch);
    if (value !== undefined) return value;
  }
  return node.const;
}

function definedEntry(name: string, value: unknown): [string, unknown][] {
  return value === undefined ? [] : [[name, value]];
}

function typeOf(node: SchemaNode): string {
  if (node['x-duration']) return 'duration';
  if (node.enum !== undefined) return `one of ${node.enum.map((value) => `\`${String(value)}\``).join(', ')}`;
  if (node.const !== undefined) return `\`${String(node.const)}\``;
  if (node.anyOf !== undefined) return [...new Set(node.anyOf.map(typeOf))].join(' or ');
  switch (node.type) {
    case 'integer':
    case 'number':
      return `${node.type === 'integer' ? 'whole number' : 'number'}${range(node)}`;
    case 'array':
      return node.items === undefined ? 'list' : `list of ${plural(typeOf(node.items))}`;
    case 'object':
      if (node.properties !== undefined) return 'section';
      return typeof node.additionalProperties === 'object' ? `map of names to ${plural(typeOf(node.additionalProperties))}` : 'mapping';
    default:
      return node.type ?? 'any';
  }
}

/** `string` → `strings`, `whole number from 1 to 9` → `whole numbers from 1 to 9`. */
function plural(type: string): string {
  return type.replace(/^(string|section|boolean|whole number|number)\b/, '$1s').replace(/ or (string|section|whole number|number)\b/g, ' or $1s');
}

/** Bounds a person would write; the safe-integer limits zod adds to a whole number are none. */
function range(node: SchemaNode): string {
  const minimum = node.minimum !== undefined && node.minimum > Number.MIN_SAFE_INTEGER ? node.minimum : undefined;
  const maximum = node.maximum !== undefined && node.maximum < Number.MAX_SAFE_INTEGER ? node.maximum : undefined;
  if (minimum !== undefined && maximum !== undefined) return ` from ${minimum} to ${maximum}`;
  if (minimum !== undefined) return ` of at least ${minimum}`;
  return maximum === undefined ? '' : ` of at most ${maximum}`;
}

function inline(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function describeEffect({ server, client }: FieldEffect): string {
  return [server === undefined ? [] : [`commonserver: ${server}`], client === undefined ? [] : [`groupclient: ${client}`]].flat().join('; ');
}

const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const code = (text: string): string => `\`${text.replace(/`/g, "'")}\``;

function renderSection(section: SectionReference): string[] {
  const lines = ['| Field | Type | Default | Reload | Description |', '| --- | --- | --- | --- | --- |'];
  for (const row of section.rows) {
    const fallback = row.default === undefined ? (row.required ? 'required' : '') : code(row.default);
    const said = row.description === undefined || /[.!?]$/.test(row.description) ? row.description : `${row.description}.`;
    const description = [said, row.example === undefined ? undefined : `Example: ${code(row.example)}.`].filter(Boolean).join(' ');
    lines.push(`| ${code(row.path)} | ${cell(row.type)} | ${cell(fallback)} | ${cell(row.reload)} | ${cell(description)} |`);
  }
  if (section.example !== undefined) lines.push('', '```yaml', section.example.trimEnd(), '```');
  return lines;
}

/** The whole page, as `npm run docs` writes it. */
export function configurationPage(): string {
  const lines = [
    '# Configuration reference',
    '',
    '<!-- Generated by `npm run docs` from the zod schemas in src/config. Edit the schemas, not this page. -->',
    '',
    'Every field of the two files, with its type, its default, when a change applies, and an example.',
    'A duration is written `500ms`, `10s`, `1.5m` or `2h` (a bare number is milliseconds).',
    'The same schemas are published for editors in `schema/` (see the first line of each shipped file).',
  ];
  for (const kind of Object.keys(SCHEMA_FILES) as ConfigKind[]) {
    const file = fileReference(kind);
    lines.push('', `## ${FILES[kind].heading}`, '', FILES[kind].intro, '', `JSON Schema: \`schema/${SCHEMA_FILES[kind]}\`.`);
    for (const section of file.sections) {
      if (section.rows.length === 0) continue;
      lines.push('', section.name === undefined ? '### Top-level fields' : `### \`${section.name}\``, '', ...renderSection(section));
    }
  }
  return `${lines.join('\n')}\n`;
}
