/**
 * The path of a request in one normal form, the one locations are matched on and the one the
 * app is sent: what the router checked (basic auth, `allow`) is what the app reads. The user's
 * spelling never reaches the app, so a spelling the app would read under another location
 * (`/%61dmin`, `/x/../admin`, `//admin`, `/./admin`) cannot slip past the check.
 *
 * The normal form (RFC 3986 6.2.2, plus what apps commonly do on top of it):
 * - an escape of a character that apps decode to itself (letters, digits, `-._~`, `!$&'()*+,=:@`)
 *   is written plainly; every other escape keeps its escape, in upper-case hex; a character that
 *   is not allowed plainly in a path (`"`, `{`, a byte past ASCII...) is escaped;
 * - `.` and `..` segments are removed (`..` stops at the root), then repeated slashes are merged;
 * - refused, because apps read them in ways that disagree: an escaped slash (`%2F`), a backslash
 *   escaped or not (some apps take it as a slash), an escaped `%` before two hex digits (an app
 *   that decodes twice sees another path), an escaped `;` (an app that decodes before it drops
 *   parameters reads one there), an escaped control character, a malformed escape, and a
 *   fragment (`#`, never part of a request).
 *
 * `;` parameters are kept: some apps drop them from each segment (`/x;p/..;/admin` is `/admin`
 * to them), others do not, so the router matches both readings (`pathWithoutParams`).
 */

/** Why a path was refused: the vhost answers it with 400. */
export class PathError extends Error {
  override readonly name = 'PathError';
}

/** Characters an app's decoder turns `%XX` back into, with no other meaning in a path: written plainly. */
const PLAIN = new Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,=:@");
const HEX_PAIR = /^[0-9A-Fa-f]{2}$/;

/**
 * `raw` (the path of a request target: from its `/` up to its `?`, as the user sent it) in
 * normal form; throws PathError for the shapes refused above.
 */
export function normalisePath(raw: string): string {
  if (!raw.startsWith('/')) throw new PathError('the path does not start with "/"');
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    let char = raw[i]!;
    const escaped = char === '%';
    if (escaped) {
      const hex = raw.slice(i + 1, i + 3);
      if (!HEX_PAIR.test(hex)) throw new PathError('a malformed %-escape in the path');
      char = String.fromCharCode(parseInt(hex, 16));
      i += 2;
      if (char === '%' && HEX_PAIR.test(raw.slice(i + 1, i + 3))) throw new PathError('an escaped "%" before two hex digits (double encoding) in the path');
    }
    const code = char.charCodeAt(0);
    if (code > 0xff) throw new PathError('a character past one byte in the path');
    if (char === '/' && escaped) throw new PathError('an escaped "/" (%2F) in the path');
    if (char === '\\') throw new PathError('a backslash in the path');
    if (char === ';' && escaped) throw new PathError('an escaped ";" (%3B) in the path');
    if (code < 0x20 || code === 0x7f) throw new PathError('an escaped control character in the path');
    if (char === '#' && !escaped) throw new PathError('a fragment ("#") in the request target');
    if (PLAIN.has(char) || (!escaped && (char === '/' || char === ';'))) out += char;
    else out += `%${code.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return withoutDotSegments(out);
}

/**
 * `path` (normal form) as an app that drops `;` parameters reads it: each segment cut at its
 * first `;`, then dot segments and empty segments removed again (`/..;/admin` is `/admin`).
 */
export function pathWithoutParams(path: string): string {
  if (!path.includes(';')) return path;
  const segments = path.split('/').map((segment) => {
    const at = segment.indexOf(';');
    return at < 0 ? segment : segment.slice(0, at);
  });
  return withoutDotSegments(segments.join('/'));
}

/**
 * How well `location` covers `path` (both normal form, compared without regard to case): the
 * length of the location when the path starts with it, a shade less when the path is the
 * location's directory itself (`/admin` under `/admin/`), -1 when it does not cover it. The
 * longest cover wins. A location is a prefix of the text, as in frp and nginx: `/api` covers
 * `/apis`. Case is ignored because many apps route without regard to it (Express, ASP.NET, IIS):
 * `/ADMIN` must reach the app that `/admin` protects.
 */
export function locationCover(location: string, path: string): number {
  const lowerLocation = location.toLowerCase();
  const lowerPath = path.toLowerCase();
  if (lowerPath.startsWith(lowerLocation)) return location.length;
  if (lowerLocation.length > 1 && lowerLocation.endsWith('/') && lowerPath === lowerLocation.slice(0, -1)) return location.length - 0.5;
  return -1;
}

/**
 * `path` (starting with `/`) with `.` and `..` segments removed as RFC 3986 5.2.4 does (a `..`
 * after `//` removes the empty segment, as browsers and WHATWG URL do), then repeated slashes
 * merged. The app never sees the user's spelling, so its own order of the two does not matter.
 */
function withoutDotSegments(path: string): string {
  const segments = path.split('/').slice(1);
  const kept: string[] = [];
  for (const [index, segment] of segments.entries()) {
    if (segment === '..') kept.pop();
    else if (segment !== '.' && !(segment === '' && index === segments.length - 1)) kept.push(segment);
  }
  const last = segments[segments.length - 1];
  const directory = last === '' || last === '.' || last === '..';
  const named = kept.filter((segment) => segment !== '');
  return `/${named.join('/')}${directory && named.length > 0 ? '/' : ''}`;
}
