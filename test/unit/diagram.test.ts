import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { MESSAGE_TYPES } from '../../src/protocol/index.js';
import { REPO_ROOT } from '../helpers/paths.js';

const diagramFile = join(REPO_ROOT, 'diagrams', 'sequence.md');

const PARTICIPANTS = ['User', 'CommonServer', 'appGroup', 'appServer', 'Client', 'LocalApp'];
const PHASES = ['Preparation', 'Initialisation', 'Proxying'];

/** Any Mermaid sequence arrow: ->> -->> -> --> -x --x -) --) (with optional +/- activation). */
const ARROW_TOKEN = /--?(?:>>|>|x|\))/;
const ARROW_LINE = /^([A-Za-z]\w*)\s*(--?(?:>>|>|x|\)))\s*[+-]?\s*([A-Za-z]\w*)\s*:\s*(\S.*)$/;

interface Arrow {
  line: number;
  from: string;
  to: string;
  label: string;
}

interface DiagramCheck {
  arrows: Arrow[];
  /** Wire messages named on arrows, with the lines naming them. */
  messages: Map<string, number[]>;
  problems: string[];
}

function mermaidBlock(markdown: string): { body: string[]; firstLine: number } {
  const lines = markdown.split('\n');
  const start = lines.findIndex((line) => line.trim() === '```mermaid');
  assert.ok(start >= 0, 'diagrams/sequence.md has no ```mermaid block');
  const end = lines.findIndex((line, i) => i > start && line.trim() === '```');
  assert.ok(end > start, 'the ```mermaid block is not closed');
  return { body: lines.slice(start + 1, end), firstLine: start + 2 };
}

/**
 * Reads the diagram by the convention stated at the top of diagrams/sequence.md: an arrow
 * label starting with a capitalised word names a wire message; other labels start lowercase.
 */
function checkDiagram(markdown: string, messageTypes: readonly string[]): DiagramCheck {
  const { body, firstLine } = mermaidBlock(markdown);
  const arrows: Arrow[] = [];
  const messages = new Map<string, number[]>();
  const problems: string[] = [];
  const known = new Set(messageTypes);

  body.forEach((raw, i) => {
    const line = firstLine + i;
    const text = raw.trim();
    // `;` ends a statement in Mermaid: a label containing one would be cut short.
    if (text.includes(';')) problems.push(`line ${line}: ";" splits a Mermaid statement: ${text}`);
    if (!ARROW_TOKEN.test(text) || /^(Note|participant|actor)\b/.test(text)) return;
    const match = ARROW_LINE.exec(text);
    if (!match) {
      problems.push(`line ${line}: an arrow the check cannot read (write "From ->> To: label"): ${text}`);
      return;
    }
    const [, from, , to, label] = match as unknown as [string, string, string, string, string];
    arrows.push({ line, from, to, label });
    const first = /^[A-Za-z]\w*/.exec(label)?.[0];
    if (first === undefined) {
      problems.push(`line ${line}: a label must start with a word: ${text}`);
      return;
    }
    if (!/^[A-Z]/.test(first)) return; // an internal step, not a wire message
    if (!known.has(first)) {
      problems.push(`line ${line}: "${first}" is not a message type of the codec (MESSAGE_TYPES); internal steps start lowercase`);
      return;
    }
    messages.set(first, [...(messages.get(first) ?? []), line]);
  });

  for (const type of messageTypes) {
    if (!messages.has(type)) problems.push(`message type ${type} of the codec appears on no arrow of the diagram`);
  }
  for (const arrow of arrows) {
    for (const end of [arrow.from, arrow.to]) {
      if (!PARTICIPANTS.includes(end)) problems.push(`line ${arrow.line}: "${end}" is not one of the participants ${PARTICIPANTS.join(', ')}`);
    }
  }
  return { arrows, messages, problems };
}

const diagram = readFileSync(diagramFile, 'utf8');

test('the diagram and the codec name the same messages', () => {
  const { problems, messages } = checkDiagram(diagram, MESSAGE_TYPES);
  assert.deepEqual(problems, []);
  assert.deepEqual([...messages.keys()].sort(), [...MESSAGE_TYPES].sort());
});

test('the diagram keeps the original actors and phases', () => {
  const { body } = mermaidBlock(diagram);
  assert.equal(body[0]?.trim(), 'sequenceDiagram');
  const declared = body.map((line) => /^\s*participant\s+(\w+)/.exec(line)?.[1]).filter((name) => name !== undefined);
  assert.deepEqual(declared, PARTICIPANTS);
  for (const phase of PHASES) {
    assert.ok(
      body.some((line) => /^\s*Note over .*:\s*(.*)$/.exec(line)?.[1] === phase),
      `phase note "${phase}" missing`,
    );
  }
  assert.ok(
    body.some((line) => /^\s*loop\b/.test(line)),
    'the heartbeat loop is missing',
  );
});

test('the diagram names messages in the direction the protocol sends them', () => {
  const { arrows } = checkDiagram(diagram, MESSAGE_TYPES);
  const clientSide = new Set(['Client']);
  const serverSide = new Set(['CommonServer', 'appGroup', 'appServer']);
  const fromClient = new Set(['Hello', 'Login', 'Ping', 'NewWorkConn', 'WorkConnFailed', 'HealthReport']);
  const fromServer = new Set(['Challenge', 'LoginResp', 'Pong', 'ReqWorkConn', 'ReqPooledWorkConns', 'StartWorkConn', 'AppsChanged']);
  for (const arrow of arrows) {
    const name = /^[A-Z]\w*/.exec(arrow.label)?.[0];
    if (name === undefined) continue;
    if (fromClient.has(name)) assert.ok(clientSide.has(arrow.from) && serverSide.has(arrow.to), `line ${arrow.line}: ${name} goes client → server`);
    if (fromServer.has(name)) assert.ok(serverSide.has(arrow.from) && clientSide.has(arrow.to), `line ${arrow.line}: ${name} goes server → client`);
  }
});

// The check itself must catch a rename on either side, or it proves nothing.
test('a message renamed in the diagram fails the check twice', () => {
  const renamed = diagram.replace('Client ->> CommonServer: Ping {seq}', 'Client ->> CommonServer: Heartbeat {seq}');
  assert.notEqual(renamed, diagram);
  const { problems } = checkDiagram(renamed, MESSAGE_TYPES);
  assert.ok(
    problems.some((p) => p.includes('"Heartbeat" is not a message type')),
    problems.join('\n'),
  );
  assert.ok(
    problems.some((p) => p.includes('message type Ping of the codec appears on no arrow')),
    problems.join('\n'),
  );
});

test('a message renamed in the codec fails the check twice', () => {
  const types = MESSAGE_TYPES.map((type) => (type === 'WorkConnFailed' ? 'WorkConnError' : type));
  const { problems } = checkDiagram(diagram, types);
  assert.ok(
    problems.some((p) => p.includes('"WorkConnFailed" is not a message type')),
    problems.join('\n'),
  );
  assert.ok(
    problems.some((p) => p.includes('message type WorkConnError of the codec appears on no arrow')),
    problems.join('\n'),
  );
});

test('a message lowercased or hidden in an unreadable arrow is caught', () => {
  // Every arrow of the message lowered (the TCP and the UDP one), so that none is left to find.
  const lowered = diagram.replaceAll('appGroup ->> Client: ReqWorkConn {app, pairingId', 'appGroup ->> Client: reqWorkConn {app, pairingId');
  assert.notEqual(lowered, diagram);
  assert.ok(checkDiagram(lowered, MESSAGE_TYPES).problems.some((p) => p.includes('ReqWorkConn of the codec appears on no arrow')));

  const unreadable = diagram.replace('Client ->> CommonServer: Login {', 'Client ->>CommonServer Login {');
  assert.notEqual(unreadable, diagram);
  assert.ok(checkDiagram(unreadable, MESSAGE_TYPES).problems.some((p) => p.includes('an arrow the check cannot read')));
});

test('the cluster diagram names only wire messages of the codec on its capitalised arrows', () => {
  const cluster = readFileSync(join(REPO_ROOT, 'diagrams', 'cluster.md'), 'utf8');
  const { messages, problems } = checkDiagram(cluster, MESSAGE_TYPES);
  // It draws the login and the goodbye, not every message: only "appears on no arrow" may be missing.
  // Its participants are nodes and etcd, not the reference diagram's six.
  assert.deepEqual(
    problems.filter((problem) => !problem.includes('appears on no arrow') && !problem.includes('is not one of the participants')),
    [],
  );
  for (const type of ['Hello', 'Challenge', 'Login', 'LoginResp', 'Goodbye']) assert.ok(messages.has(type), `${type} is drawn`);
});

/** Every TypeScript source under src/, concatenated (for "does this name still exist"). */
function sourceText(): string {
  const root = join(REPO_ROOT, 'src');
  const files = readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((file) => file.endsWith('.ts'));
  return files.map((file) => readFileSync(join(root, file), 'utf8')).join('\n');
}

test('the glossary points at files and names that exist in the code', () => {
  const glossary = readFileSync(join(REPO_ROOT, 'diagrams', 'glossary.md'), 'utf8');
  const rows = glossary.split('\n').filter((line) => line.startsWith('| **'));
  assert.ok(rows.length >= 12, 'the glossary table has its rows');
  const source = sourceText();
  for (const row of rows) {
    const inCode = row.split('|').at(-2) ?? '';
    for (const [, ref] of inCode.matchAll(/`([^`]+)`/g)) {
      if (ref!.startsWith('src/')) {
        assert.ok(existsSync(join(REPO_ROOT, ref!)), `glossary: ${ref} does not exist`);
        continue;
      }
      // `Name`, `Name.member`, `name()`, or a union member like `bad-peer`.
      for (const word of ref!
        .replace(/[(){}:,<>]/g, ' ')
        .split(/[\s.]+/)
        .filter((w) => /^[A-Za-z][\w-]*$/.test(w))) {
        assert.ok(new RegExp(`\\b${word}\\b`).test(source), `glossary: "${word}" (from \`${ref}\`) is not in src/`);
      }
    }
  }
});
