import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { isLoopback, type AdminSettings } from '../config/index.js';
import { HttpError, type RequestTarget } from './http-util.js';

/** The one route that may carry `?token=`: EventSource cannot send an Authorization header. */
export const EVENTS_PATH = '/api/events';
const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);
/**
 * The content types an HTML form (or a no-preflight fetch) may send to another origin: a
 * state-changing request carrying one of them may come from any web page, so none is accepted.
 */
const FORM_CONTENT_TYPES: ReadonlySet<string> = new Set(['application/x-www-form-urlencoded', 'multipart/form-data', 'text/plain']);
const WILDCARD_HOSTS: ReadonlySet<string> = new Set(['0.0.0.0', '::']);

/**
 * What every admin request must pass before it is routed, so that the admin port cannot be
 * driven by a web page the operator happens to have open:
 *
 * - `Host` names the admin itself (DNS rebinding points a foreign name at 127.0.0.1, and the
 *   browser then sends that name);
 * - a state-changing request comes from no other `Origin` and not with a form's content type
 *   (a cross-site form post needs no CORS preflight);
 * - the token, when one is set, comes in the Authorization header (never a cookie or anything
 *   else a browser adds on its own), or as `?token=` on the event stream only.
 */
export class RequestGuard {
  private readonly tokenDigest: Buffer | undefined;
  private readonly allowedHosts: readonly string[];

  /** `port` is read per request: it is only known once the server listens (port 0 in tests). */
  constructor(
    private readonly config: AdminSettings,
    private readonly port: () => number,
  ) {
    this.tokenDigest = config.token === undefined ? undefined : digest(config.token.reveal());
    this.allowedHosts = config.allowedHosts ?? [];
  }

  /** Host, Origin and content type; throws the HttpError to answer with. */
  check(req: IncomingMessage): void {
    const host = (req.headers.host ?? '').toLowerCase();
    if (!this.isAllowedHost(host)) {
      throw new HttpError(
        421,
        'HOST_NOT_ALLOWED',
        `Host ${JSON.stringify(host.slice(0, 200))} is not this admin server's address; add it to admin.allowedHosts if it should be`,
      );
    }
    if (SAFE_METHODS.has(req.method ?? 'GET')) return;
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${host}` && origin !== `https://${host}`) {
      throw new HttpError(
        403,
        'ORIGIN_NOT_ALLOWED',
        `a ${req.method} from origin ${JSON.stringify(origin.slice(0, 200))} is refused: only the admin's own pages may change state`,
      );
    }
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (FORM_CONTENT_TYPES.has(type)) {
      throw new HttpError(
        415,
        'UNSUPPORTED_MEDIA_TYPE',
        `content-type ${type} is refused on ${req.method}: send the group as application/json or application/yaml`,
      );
    }
  }

  /** A bearer token in the Authorization header, or `?token=` on the event stream alone. */
  authorize(req: IncomingMessage, target: RequestTarget): void {
    if (this.tokenDigest === undefined) return;
    const header = req.headers.authorization;
    const fromQuery = target.path === EVENTS_PATH ? target.query.get('token') : null;
    const given = header?.startsWith('Bearer ') ? header.slice('Bearer '.length) : fromQuery;
    if (given === null || given === undefined || !timingSafeEqual(digest(given), this.tokenDigest)) {
      const hint = target.query.has('token') && target.path !== EVENTS_PATH ? `; ?token= is accepted on ${EVENTS_PATH} only` : '';
      throw new HttpError(401, 'UNAUTHORIZED', `a valid admin token is required (Authorization: Bearer TOKEN)${hint}`);
    }
  }

  private isAllowedHost(host: string): boolean {
    const parsed = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(host);
    if (parsed === null) return false;
    const name = parsed[1]!;
    const port = parsed[2] === undefined ? 80 : Number(parsed[2]);
    for (const allowed of this.allowedHosts) {
      if (allowed === host || allowed === name) return true;
    }
    if (port !== this.port()) return false;
    const bindHost = this.config.bind.host.toLowerCase();
    // A rebinding page always sends its own DNS name: on a wildcard bind, any IP literal is
    // this machine as the client dialled it, and only names need listing.
    if (WILDCARD_HOSTS.has(bindHost)) return isIP(name.replace(/^\[|\]$/g, '')) !== 0;
    const own = new Set([bindHost.includes(':') ? `[${bindHost}]` : bindHost]);
    if (isLoopback(bindHost)) for (const alias of ['localhost', '127.0.0.1', '[::1]']) own.add(alias);
    return own.has(name);
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
