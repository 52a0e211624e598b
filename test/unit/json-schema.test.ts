import assert from 'node:assert/strict';
import { readdirSync, readFileSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse } from 'yaml';
import { configJsonSchema, SCHEMA_DIR, SCHEMA_FILES, schemaComment, type ConfigKind } from '../../src/config/index.js';
import { encodeFrame, MESSAGE_TYPES, type Message } from '../../src/protocol/index.js';
import { CONFIG_FIXTURES, REPO_ROOT } from '../helpers/paths.js';

const root = REPO_ROOT;
const fixtures = CONFIG_FIXTURES;
const SCHEMA_LINE = /^# yaml-language-server: \$schema=(\S+)\n/;

function readSchema(file: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(SCHEMA_DIR, file), 'utf8')) as Record<string, unknown>;
}

/** A real JSON Schema validator over the files the build wrote, as an editor would use them. */
function validatorFor(kind: ConfigKind): (text: string) => string[] {
  const validate = new Ajv2020({ allErrors: true, strict: true }).compile(readSchema(SCHEMA_FILES[kind]));
  return (text) =>
    validate(parse(text)) ? [] : (validate.errors ?? []).map((error) => `${error.instancePath} ${error.message ?? ''} ${JSON.stringify(error.params)}`);
}

const yamlIn = (dir: string): string[] =>
  readdirSync(dir)
    .filter((name) => /\.ya?ml$/.test(name))
    .map((name) => join(dir, name));
const SHIPPED: [ConfigKind, string][] = [
  ['commonserver', join(root, 'config', 'commonserver.yaml')],
  ...yamlIn(join(root, 'config', 'groups')).map((file): [ConfigKind, string] => ['group', file]),
];

describe('JSON Schema files', () => {
  test('the build wrote schema/ from the current zod schemas', () => {
    assert.equal(SCHEMA_DIR, join(root, 'schema'));
    for (const kind of Object.keys(SCHEMA_FILES) as ConfigKind[]) assert.deepEqual(readSchema(SCHEMA_FILES[kind]), configJsonSchema(kind), kind);
  });

  for (const [kind, file] of SHIPPED) {
    test(`${file.slice(root.length + 1)} names its schema on its first line and satisfies it`, () => {
      const text = readFileSync(file, 'utf8');
      const named = SCHEMA_LINE.exec(text)?.[1];
      assert.ok(named, 'first line is the yaml-language-server schema comment');
      assert.equal(resolve(dirname(file), named), join(SCHEMA_DIR, SCHEMA_FILES[kind]));
      assert.deepEqual(validatorFor(kind)(text), []);
    });
  }

  test('valid fixtures pass; fixtures the schema can judge alone fail it, as they fail the loader', () => {
    const server = validatorFor('commonserver');
    const group = validatorFor('group');
    for (const file of [join(fixtures, 'valid', 'commonserver.yaml'), join(fixtures, 'valid', 'minimal-server.yaml')])
      assert.deepEqual(server(readFileSync(file, 'utf8')), [], file);
    for (const file of yamlIn(join(fixtures, 'valid', 'groups'))) assert.deepEqual(group(readFileSync(file, 'utf8')), [], file);
    // Type, pattern, range and unknown keys: the rest (file names, environment, cross-field rules) only the loader knows.
    for (const name of ['unknown-key.yaml', 'bad-duration.yaml', 'bad-bind.yaml', 'bad-pairing-timeout.yaml']) {
      assert.notDeepEqual(server(readFileSync(join(fixtures, 'invalid', 'server', name), 'utf8')), [], name);
    }
    for (const name of ['unknown-key.yaml', 'unknown-app-key.yaml', 'bad-host-port.yaml', 'no-apps.yaml', 'remote-port-out-of-range.yaml']) {
      assert.notDeepEqual(group(readFileSync(join(fixtures, 'invalid', 'groups', name), 'utf8')), [], name);
    }
  });

  test('the message schema accepts what the codec encodes and refuses an unknown type', () => {
    const validate = new Ajv2020({ strict: true }).compile(readSchema('messages.schema.json'));
    const samples: Message[] = [
      { type: 'StartWorkConn', app: 'web', pairingId: 'p-1' },
      { type: 'WorkConnFailed', pairingId: 'p-1', reason: 'local app unreachable' },
      { type: 'LoginResp', error: { code: 'BAD_SECRET', reason: 'wrong secret' } },
      { type: 'Goodbye', code: 'KICKED', reason: 'kicked by the admin' },
    ];
    for (const message of samples) assert.ok(validate(JSON.parse(encodeFrame(message).subarray(4).toString())), JSON.stringify(validate.errors));
    assert.equal(validate({ type: 'Nope' }), false);
    assert.equal(validate({ type: 'Ping', seq: -1 }), false);
    const listed = (
      (readSchema('messages.schema.json').oneOf ?? readSchema('messages.schema.json').anyOf) as { properties: { type: { const: string } } }[]
    ).map((one) => one.properties.type.const);
    assert.deepEqual(listed, [...MESSAGE_TYPES]);
  });

  test('schemaComment points a written file at the installed schema, wherever the file is', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ntp-schema-'));
    for (const [kind, file] of [
      ['group', join(dir, 'groups', 'x.yaml')],
      ['commonserver', join(dir, 'commonserver.yaml')],
    ] as const) {
      const named = SCHEMA_LINE.exec(`${schemaComment(kind, file)}\n`)?.[1];
      assert.ok(named);
      const target = resolve(dirname(file), named);
      assert.equal(target, join(SCHEMA_DIR, SCHEMA_FILES[kind]));
      assert.ok(existsSync(target));
    }
  });
});
