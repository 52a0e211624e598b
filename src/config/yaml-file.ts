import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import { ConfigError } from './errors.js';
import type { z } from 'zod';

type Path = (string | number)[];

/** Our YAML files are a few KB; anything near this is a mistake or an attack, not a config. */
export const MAX_CONFIG_BYTES = 256 * 1024;
/**
 * yaml's own guard against "billion laughs" files (nested aliases that expand exponentially):
 * expanding more alias nodes than this throws instead of exhausting memory.
 */
export const MAX_ALIAS_COUNT = 100;

/**
 * A parsed YAML file that can point at its own fields: every error it raises names the file,
 * the dotted field and the line the YAML parser saw it on.
 */
export class YamlFile {
  private constructor(
    readonly file: string,
    private readonly doc: Document,
    private readonly lines: LineCounter,
    private readonly data: unknown,
  ) {}

  static read(file: string): YamlFile {
    return YamlFile.parse(file, readBounded(file));
  }

  /**
   * Parses and expands the document once, here, so that whatever the parser or the alias
   * expansion rejects becomes a ConfigError naming `file` rather than an exception that
   * would stop the caller (a server loading a whole directory) altogether.
   */
  static parse(file: string, text: string): YamlFile {
    if (Buffer.byteLength(text) > MAX_CONFIG_BYTES) {
      throw new ConfigError('CONFIG_READ', `${file}: larger than ${MAX_CONFIG_BYTES} bytes: not a config file`, file);
    }
    const lines = new LineCounter();
    let doc: Document;
    let data: unknown;
    try {
      doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
      const first = doc.errors[0];
      if (first) {
        const line = lines.linePos(first.pos[0]).line;
        throw new ConfigError('CONFIG_PARSE', `${file}:${line}: ${first.message.split('\n')[0]}`, file, undefined, line);
      }
      data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      // yaml throws a ReferenceError past maxAliasCount; a RangeError for absurd nesting.
      if (error instanceof ReferenceError) {
        const line = firstAliasLine(doc!, lines);
        const where = line === undefined ? file : `${file}:${line}`;
        throw new ConfigError(
          'CONFIG_PARSE',
          `${where}: its aliases expand to more than ${MAX_ALIAS_COUNT} nodes: refused (a "billion laughs" file)`,
          file,
          undefined,
          line,
        );
      }
      throw new ConfigError('CONFIG_PARSE', `${file}: cannot be parsed: ${(error as Error).message}`, file);
    }
    return new YamlFile(file, doc, lines, data);
  }

  /** The whole document as plain data (still unvalidated). */
  root(): unknown {
    return this.data;
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

  /**
   * Validates the document (or `value` at `path`) against `schema`: its output, or a
   * ConfigError at the field of the first problem. An unknown key comes first, as it often
   * explains the problems after it (a misspelt key leaves its field missing).
   */
  parse<Schema extends z.ZodType>(schema: Schema, value: unknown = this.data, path: Path = []): z.output<Schema> {
    const result = schema.safeParse(value);
    if (result.success) return result.data;
    const issues = result.error.issues;
    const issue = issues.find((one) => one.code === 'unrecognized_keys') ?? issues[0]!;
    const at = [...path, ...issue.path.map((part) => (typeof part === 'number' ? part : String(part)))];
    if (issue.code === 'unrecognized_keys') at.push(issue.keys[0]!);
    throw this.error(at, issue.message);
  }
}

export function formatPath(path: Path): string {
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? part : `.${part}`)).join('');
}

function firstAliasLine(doc: Document, lines: LineCounter): number | undefined {
  let start: number | undefined;
  visit(doc, {
    Alias(_key, node) {
      start = node.range?.[0];
      return visit.BREAK;
    },
  });
  return start === undefined ? undefined : lines.linePos(start).line;
}

/**
 * The file's text, refused past MAX_CONFIG_BYTES before reading it all, and refused when it is
 * not a regular file (a FIFO would block the reader forever).
 */
function readBounded(file: string): string {
  let fd: number | undefined;
  try {
    // Non-blocking: opening a FIFO for reading would otherwise wait for a writer.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new ConfigError('CONFIG_READ', `${file}: not a regular file`, file);
    if (stat.size > MAX_CONFIG_BYTES)
      throw new ConfigError('CONFIG_READ', `${file}: ${stat.size} bytes, larger than ${MAX_CONFIG_BYTES}: not a config file`, file);
    // One byte past the limit tells a file that grew since fstat from one that did not.
    const buffer = Buffer.alloc(MAX_CONFIG_BYTES + 1);
    let length = 0;
    while (length < buffer.length) {
      const read = readSync(fd, buffer, length, buffer.length - length, null);
      if (read === 0) break;
      length += read;
    }
    if (length > MAX_CONFIG_BYTES) throw new ConfigError('CONFIG_READ', `${file}: larger than ${MAX_CONFIG_BYTES} bytes: not a config file`, file);
    return buffer.subarray(0, length).toString('utf8');
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError('CONFIG_READ', `${file}: cannot read: ${(error as Error).message}`, file);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
