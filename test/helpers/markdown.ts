/**
 * Reading the project's Markdown as GitHub renders it, for the tests that hold the docs to the
 * repository: headings and their anchors, relative links, and the fenced block under a heading.
 */

/** The lines outside fenced code blocks (a `# comment` inside a ```sh block is no heading). */
function proseLines(text: string): string[] {
  let fence: string | undefined;
  const lines: string[] = [];
  for (const line of text.split('\n')) {
    const marker = /^\s*(`{3,}|~{3,})/.exec(line)?.[1];
    if (marker !== undefined && (fence === undefined || marker.startsWith(fence))) {
      fence = fence === undefined ? marker : undefined;
      continue;
    }
    if (fence === undefined) lines.push(line);
  }
  return lines;
}

/** GitHub's anchor for a heading (github-slugger): markup dropped, lower case, punctuation out, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/`/g, '')
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

/** Every anchor a page has: one per heading, a repeated one numbered as GitHub numbers it (-1, -2...). */
export function anchorsOf(text: string): Set<string> {
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  for (const line of proseLines(text)) {
    const heading = /^#{1,6}\s+(.+?)\s*#*\s*$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const base = slug(heading);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

/** The targets of the page's inline links and images outside code (code spans stripped first). */
export function linksOf(text: string): string[] {
  const prose = proseLines(text)
    .join('\n')
    .replace(/`[^`\n]*`/g, '');
  return [...prose.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((match) => match[1]!);
}

/** The body of the first fenced block after the heading whose text is `heading`. */
export function fencedBlockUnder(text: string, heading: string): string | undefined {
  const lines = text.split('\n');
  const at = lines.findIndex((line) => new RegExp(`^#{1,6}\\s+${heading.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*$`).test(line));
  if (at < 0) return undefined;
  const open = lines.findIndex((line, index) => index > at && /^\s*```/.test(line));
  if (open < 0 || lines.slice(at + 1, open).some((line) => /^#{1,6}\s/.test(line))) return undefined;
  const close = lines.findIndex((line, index) => index > open && /^\s*```\s*$/.test(line));
  return close < 0 ? undefined : lines.slice(open + 1, close).join('\n');
}
