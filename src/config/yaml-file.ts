import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { ConfigError } from './errors.js';
import type { Parsed } from './values.js';

type Path = (string | number)[];

/**
 * A parsed YAML file that can point at its own fields: every error it raises names the file,
 * the dotted field and the line the YAML parser saw it on.
 */
export class YamlFile {
  private constructor(
    readonly file: string,
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  static read(file: string): YamlFile {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new ConfigError('CONFIG_READ', `${file}: cannot read: ${(error as Error).message}`, file);
    }
    return YamlFile.parse(file, text);
  }

  static parse(file: string, text: string): YamlFile {
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
    const first = doc.errors[0];
    if (first) {
      const line = lines.linePos(first.pos[0]).line;
      throw new ConfigError('CONFIG_PARSE', `${file}:${line}: ${first.message.split('\n')[0]}`, file, undefined, line);
    }
    return new YamlFile(file, doc, lines);
  }

  /** The whole document as plain data (still unvalidated). */
  root(): unknown {
    return this.doc.toJS();
  }

  lineOf(path: Path): number | undefined {
    let node = this.doc.getIn(path, true) as Node | undefined;
    // A missing key points at its parent, which is where the user has to add it.
    for (let depth = path.length - 1; node === undefined && depth >= 0; depth--) {
      node = (depth === 0 ? this.doc.contents : this.doc.getIn(path.slice(0, depth), true)) as Node | undefined;
    }
    const start = node?.range?.[0];
    return start === undefined ? undefined : this.lines.linePos(start).line;
  }

  error(path: Path, problem: string): ConfigError {
    const field = formatPath(path);
    const line = this.lineOf(path);
    const where = line === undefined ? this.file : `${this.file}:${line}`;
    return new ConfigError('CONFIG_INVALID', `${where}: ${field ? `${field}: ` : ''}${problem}`, this.file, field, line);
  }

  /** Unwraps a Parsed value or throws a ConfigError at `path`. */
  expect<T>(path: Path, parsed: Parsed<T>): T {
    if (!parsed.ok) throw this.error(path, parsed.problem);
    return parsed.value;
  }

  /** Rejects keys not in `allowed`, naming the first unknown one. */
  onlyKeys(path: Path, value: Record<string, unknown>, allowed: readonly string[]): void {
    for (const key of Object.keys(value)) {
      if (!allowed.includes(key)) {
        throw this.error([...path, key], `unknown field (expected one of: ${allowed.join(', ')})`);
      }
    }
  }

  mapAt(path: Path, value: unknown): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw this.error(path, 'expected a mapping');
    }
    return value as Record<string, unknown>;
  }
}

export function formatPath(path: Path): string {
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? part : `.${part}`)).join('');
}
