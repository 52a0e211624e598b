import { z } from 'zod';
import { section } from './sections.js';
import { problem } from './values.js';

/**
 * `requestHeaders:` and `responseHeaders:` of an http app: header lines the vhost sets or
 * removes, after its own (the forwarding headers on requests). Written as
 * `{ set: { Name: value }, remove: [Name] }`.
 */
export interface HeaderRules {
  /** Lines to write, replacing any of the same name (names as written, values as given). */
  readonly set: readonly (readonly [name: string, value: string])[];
  /** Names (lower case, `_` read as `-`) whose lines are dropped. */
  readonly remove: readonly string[];
}

/** Most lines one rule set may name, each way: a head stays far below the 64 KiB it may have. */
export const MAX_HEADER_RULES = 64;
/** Longest value a rule may set. */
export const MAX_HEADER_RULE_VALUE = 4096;

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$/;
/** Visible characters and inner spaces or tabs: no CR, LF or NUL, which would end or split the line. */
const VALUE = /^(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?$/;

/**
 * Headers that belong to one hop or say where a message ends: the vhost reads them to route and
 * frame each message, so a rule that changed them would make the app read another message
 * than the one the vhost checked. Host is the route: `hostHeaderRewrite` changes it.
 */
const MANAGED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'host',
]);

/** A header name as the vhost compares it: lower case, `_` read as `-` (CGI-style apps merge the two). */
export function headerKey(name: string): string {
  return name.toLowerCase().replaceAll('_', '-');
}

function managedProblem(name: string): string | undefined {
  const key = headerKey(name);
  if (key === 'host') return 'Host is the name the request was routed by: use hostHeaderRewrite to change what the app sees';
  if (MANAGED.has(key)) return `${name} is a hop-by-hop or framing header the vhost manages itself: it cannot be set or removed`;
  return undefined;
}

const NAME_EXPECTED = `expected a header name (letters, digits and !#$%&'*+.^_\`|~-)`;
const VALUE_EXPECTED = `expected a header value of at most ${MAX_HEADER_RULE_VALUE} characters, without line breaks or control characters`;

/** A number or true/false, as YAML reads `X-Version: 2`, is written as the text it was. */
const headerValue = z.preprocess(
  (value) => (typeof value === 'number' || typeof value === 'boolean' ? String(value) : value),
  z.string(problem(VALUE_EXPECTED)).refine((value) => value.length <= MAX_HEADER_RULE_VALUE && VALUE.test(value), {
    error: (issue) => `${VALUE_EXPECTED}, got ${JSON.stringify(issue.input)}`,
  }),
);

/** One `requestHeaders:` or `responseHeaders:` section. */
export function headerRulesSchema(what: 'request' | 'response') {
  return section({
    set: z
      .record(z.string(), headerValue, problem('expected a mapping of header names to values'))
      .optional()
      .meta({ description: `Header lines written on every ${what}, replacing any of the same name` }),
    remove: z
      .array(z.string(problem(NAME_EXPECTED)), problem('expected a list of header names'))
      .optional()
      .meta({ description: `Header lines dropped from every ${what}` }),
  })
    .transform(({ set = {}, remove = [] }, ctx): HeaderRules => {
      const names = Object.keys(set);
      if (names.length > MAX_HEADER_RULES) ctx.addIssue({ code: 'custom', path: ['set'], message: `at most ${MAX_HEADER_RULES} headers` });
      if (remove.length > MAX_HEADER_RULES) ctx.addIssue({ code: 'custom', path: ['remove'], message: `at most ${MAX_HEADER_RULES} headers` });
      const seen = new Map<string, string>();
      const check = (name: string, path: (string | number)[]): void => {
        const issue = !TOKEN.test(name) ? `${NAME_EXPECTED}, got ${JSON.stringify(name)}` : managedProblem(name);
        if (issue !== undefined) return void ctx.addIssue({ code: 'custom', path, message: issue });
        const earlier = seen.get(headerKey(name));
        if (earlier !== undefined) ctx.addIssue({ code: 'custom', path, message: `${name} is already named as ${earlier}: name each header once` });
        seen.set(headerKey(name), name);
      };
      names.forEach((name) => check(name, ['set', name]));
      remove.forEach((name, i) => check(name, ['remove', i]));
      return Object.freeze({
        set: Object.freeze(Object.entries(set).map(([name, value]) => Object.freeze([name, value] as const))),
        remove: Object.freeze(remove.map(headerKey)),
      });
    })
    .meta({ description: `http: header lines set and removed on every ${what}${what === 'request' ? ', after the forwarding headers' : ''}` });
}
