// The admin API as the dashboard calls it: the token lives in sessionStorage only (never in a
// URL, except the event stream's ?token=, the one place the API accepts it: EventSource
// cannot send headers).

const TOKEN_KEY = 'ntp-admin-token';

/** An answer the API refused, with its status, stable code, message and (when known) field. */
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/**
 * A `#token=` in the address (docs/operating.md's way to open the dashboard) moves to
 * sessionStorage and leaves the address bar, so it is not bookmarked or shared with the page.
 */
export function adoptTokenFromFragment() {
  const given = new URLSearchParams(location.hash.slice(1)).get('token');
  if (given === null) return;
  if (given !== '') sessionStorage.setItem(TOKEN_KEY, given);
  history.replaceState(null, '', location.pathname + location.search);
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** A JSON request; resolves with the parsed body, or throws an ApiError. */
export async function api(method, path, body) {
  const headers = {};
  const given = token();
  if (given) headers.authorization = `Bearer ${given}`;
  // JSON, never a form's content type: the API refuses those on purpose (cross-site forms).
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  let parsed = null;
  try {
    parsed = await res.json();
  } catch {
    // an answer without a JSON body
  }
  if (!res.ok) {
    const error = parsed?.error ?? {};
    throw new ApiError(res.status, error.code ?? `HTTP_${res.status}`, error.message ?? `${method} ${path}: HTTP ${res.status}`, error.field);
  }
  return parsed;
}

/** A text answer (a host file): resolves with the text, or throws an ApiError. */
export async function apiText(path) {
  const given = token();
  const res = await fetch(path, { headers: given ? { authorization: `Bearer ${given}` } : {}, cache: 'no-store' });
  if (res.ok) return res.text();
  let error = {};
  try {
    error = (await res.json()).error ?? {};
  } catch {
    // an answer without a JSON body
  }
  throw new ApiError(res.status, error.code ?? `HTTP_${res.status}`, error.message ?? `GET ${path}: HTTP ${res.status}`, error.field);
}

export function eventStreamUrl() {
  const given = token();
  return `/api/events${given ? `?token=${encodeURIComponent(given)}` : ''}`;
}
