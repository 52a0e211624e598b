// The recent-events panel: lifecycle events one per line, per-connection events folded into
// one count per app and minute, filters by group, app and type, pairing ids on request.
import { clock, el, formatBytes, formatDuration } from './format.js';

/** One line each would drown the rest when users come and go: counted per app and minute. */
const PER_CONNECTION = new Set([
  'user-conn-accepted',
  'user-conn-refused',
  'work-conn-requested',
  'work-conn-joined',
  'work-conn-failed',
  'conn-closed',
  'udp-session-opened',
  'udp-session-closed',
  'pool-user-routed',
]);
/** Periodic samples and pool bookkeeping: the charts and counters show them. */
const HIDDEN = new Set(['heartbeat', 'traffic', 'work-conn-pooled']);
const PAIRING_FIELDS = new Set(['pairingId', 'servedPairingId']);
const MAX_ITEMS = 300;
const MAX_PAIRING_IDS = 50;

/** The type filter's name for folded per-connection events. */
export const USER_CONNECTIONS = 'user-connections';

function plural(count, word) {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}

function fieldValue(key, value) {
  if (typeof value === 'number' && /^bytes/i.test(key)) return formatBytes(value);
  if (typeof value === 'number' && /Ms$/.test(key)) return formatDuration(value);
  if (key === 'apps' && Array.isArray(value)) {
    const where = (app) => `${app.domains ? `${app.domains.join(', ')} on ` : ''}:${app.remotePort}${app.protocol === 'udp' ? '/udp' : ''}`;
    return value.map((app) => (app.state === 'listening' ? `${app.name} → ${where(app)}` : `${app.name} ✗ ${app.error ?? ''}`)).join(', ');
  }
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

export class EventLog {
  constructor() {
    /** Oldest first: { kind: 'event', event } or { kind: 'fold', ...counts }. */
    this.items = [];
    this.folds = new Map();
    this.filters = { group: '', app: '', type: '' };
    this.showPairingIds = false;
  }

  /** Takes one server event (with its `at`); false when it is not listed at all. */
  add(event) {
    if (HIDDEN.has(event.type)) return false;
    if (PER_CONNECTION.has(event.type)) this.fold(event);
    else this.items.push({ kind: 'event', type: event.type, group: event.group, app: event.app, at: event.at, event });
    while (this.items.length > MAX_ITEMS) {
      const dropped = this.items.shift();
      if (dropped.kind === 'fold') this.folds.delete(dropped.key);
    }
    return true;
  }

  fold(event) {
    const minute = Math.floor(Date.parse(event.at) / 60_000);
    const key = `${event.group}/${event.app}@${minute}`;
    let fold = this.folds.get(key);
    if (fold === undefined) {
      fold = {
        kind: 'fold',
        type: USER_CONNECTIONS,
        key,
        group: event.group,
        app: event.app,
        minute,
        at: event.at,
        users: 0,
        closed: 0,
        bytesIn: 0,
        bytesOut: 0,
        errors: 0,
        refused: 0,
        failed: 0,
        pairingIds: [],
      };
      this.folds.set(key, fold);
      this.items.push(fold);
    }
    fold.at = event.at;
    switch (event.type) {
      case 'user-conn-accepted':
      case 'udp-session-opened':
        fold.users += 1;
        break;
      case 'user-conn-refused':
        fold.refused += 1;
        break;
      case 'work-conn-failed':
        fold.failed += 1;
        break;
      case 'conn-closed':
      case 'udp-session-closed':
        fold.closed += 1;
        fold.bytesIn += event.bytesIn;
        fold.bytesOut += event.bytesOut;
        if (event.error) fold.errors += 1;
        break;
      default:
    }
    if (event.pairingId && fold.pairingIds.length < MAX_PAIRING_IDS && !fold.pairingIds.includes(event.pairingId)) fold.pairingIds.push(event.pairingId);
  }

  matches(item) {
    const { group, app, type } = this.filters;
    return (!group || item.group === group) && (!app || item.app === app) && (!type || item.type === type);
  }

  /** Values the filters can take, from what was seen. */
  choices() {
    const groups = new Set();
    const apps = new Set();
    const types = new Set();
    for (const item of this.items) {
      if (item.group) groups.add(item.group);
      if (item.app && (!this.filters.group || item.group === this.filters.group)) apps.add(item.app);
      types.add(item.type);
    }
    return { groups: [...groups].sort(), apps: [...apps].sort(), types: [...types].sort() };
  }

  render(list) {
    const rows = [];
    for (let i = this.items.length - 1; i >= 0; i--) {
      const item = this.items[i];
      if (this.matches(item)) rows.push(item.kind === 'fold' ? this.foldRow(item) : this.eventRow(item));
    }
    list.replaceChildren(...rows);
    if (rows.length === 0) list.append(el('li', { class: 'muted', text: 'no event matches the filters' }));
  }

  eventRow({ event }) {
    const { type, at, group, app, ...rest } = event;
    const where = group ? `${group}${app ? `/${app}` : ''} ` : '';
    const fields = Object.entries(rest)
      .filter(([key, value]) => (this.showPairingIds || !PAIRING_FIELDS.has(key)) && !(Array.isArray(value) && value.length === 0))
      .map(([key, value]) => `${key}: ${fieldValue(key, value)}`)
      .join(' · ');
    return el(
      'li',
      { 'data-kind': 'event', 'data-type': type, 'data-group': group, 'data-app': app },
      el('span', { class: 'muted', text: `${clock(at)} ` }),
      el('span', { class: 'type', text: type }),
      ` ${where}`,
      el('span', { class: 'fields', text: fields }),
    );
  }

  foldRow(fold) {
    const parts = [plural(fold.users, 'user connection')];
    if (fold.closed > 0) parts.push(`${fold.closed} closed: ${formatBytes(fold.bytesIn)} in, ${formatBytes(fold.bytesOut)} out`);
    if (fold.errors > 0) parts.push(`${fold.errors} ended by an error`);
    if (fold.refused > 0) parts.push(`${fold.refused} refused`);
    if (fold.failed > 0) parts.push(`${fold.failed} without a work conn`);
    const from = fold.minute * 60_000;
    const row = el(
      'li',
      { 'data-kind': 'fold', 'data-type': USER_CONNECTIONS, 'data-group': fold.group, 'data-app': fold.app, 'data-users': String(fold.users) },
      el('span', { class: 'muted', text: `${clock(from).slice(0, 5)}–${clock(from + 60_000).slice(0, 5)} ` }),
      el('span', { class: 'type', text: 'users' }),
      ` ${fold.group}/${fold.app} `,
      el('span', { class: 'fields', text: parts.join(' · ') }),
    );
    if (this.showPairingIds && fold.pairingIds.length > 0) row.append(el('div', { class: 'pairing-ids', text: `pairing ids: ${fold.pairingIds.join(', ')}` }));
    return row;
  }
}
