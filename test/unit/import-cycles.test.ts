import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';

import { REPO_ROOT } from '../helpers/paths.js';

// The sources are read, not dist/, because tsc erases `import type` lines and a cycle of types
// is a cycle of design too.
const srcRoot = join(REPO_ROOT, 'src');

/** A static import or re-export of a relative module, over several lines if need be. */
const RELATIVE_IMPORT = /^\s*(?:import|export)\b[^;]*?\bfrom\s+['"](\.{1,2}\/[^'"]+)['"]|^\s*import\s+['"](\.{1,2}\/[^'"]+)['"]/gm;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return entry.endsWith('.ts') && !entry.endsWith('.d.ts') ? [path] : [];
  });
}

/** Each source file (relative to src/) with the source files it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(srcRoot)) {
    const text = readFileSync(file, 'utf8');
    const targets = [...text.matchAll(RELATIVE_IMPORT)].map((match) => {
      const specifier = (match[1] ?? match[2])!;
      return relative(srcRoot, resolve(dirname(file), specifier.replace(/\.js$/, '.ts')));
    });
    graph.set(relative(srcRoot, file), [...new Set(targets)]);
  }
  return graph;
}

/** The shortest path of imports from `from` back to itself, if there is one. */
function cycleThrough(graph: Map<string, string[]>, from: string): string[] | undefined {
  const cameFrom = new Map<string, string>();
  const queue = [from];
  while (queue.length > 0) {
    const node = queue.shift()!;
    for (const next of graph.get(node) ?? []) {
      if (next === from) {
        const path = [node];
        while (path[0] !== from) path.unshift(cameFrom.get(path[0]!)!);
        return [...path, from];
      }
      if (cameFrom.has(next)) continue;
      cameFrom.set(next, node);
      queue.push(next);
    }
  }
  return undefined;
}

/** One cycle per set of files that import each other, named by its files in import order. */
function importCycles(graph: Map<string, string[]>): string[] {
  const seen = new Set<string>();
  const cycles: string[] = [];
  for (const file of [...graph.keys()].sort()) {
    if (seen.has(file)) continue;
    const cycle = cycleThrough(graph, file);
    if (cycle === undefined) continue;
    cycle.forEach((member) => seen.add(member));
    cycles.push(cycle.join(' → '));
  }
  return cycles;
}

test('no module of src/ imports itself through others (type imports count)', { timeout: 30_000 }, () => {
  const graph = importGraph();
  assert.ok(graph.size > 50, `expected the sources under ${srcRoot}, found ${graph.size} files`);
  assert.deepEqual(importCycles(graph), []);
});

test('the cycle finder names a cycle it is given', { timeout: 30_000 }, () => {
  const graph = new Map([
    ['a.ts', ['b.ts']],
    ['b.ts', ['c.ts']],
    ['c.ts', ['a.ts', 'd.ts']],
    ['d.ts', []],
  ]);
  assert.deepEqual(importCycles(graph), ['a.ts → b.ts → c.ts → a.ts']);
});
