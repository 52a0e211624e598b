// Every app of every group in one compact table, sortable by any column; a click on a row
// opens its charts (the last two minutes live, the last 24 h from the server's history)
// under it, so the page stays short however many apps there are.
import { api } from './api.js';
import { createChart, drawChart, HISTORY } from './chart.js';
import { el, formatBytes } from './format.js';

/** A vhost app is reached by its names on the server's vhost port; the others on a port of their own. */
export function portText(app) {
  if (app.domains) return `${app.domains.join(', ')} on :${app.publicPort ?? '-'}`;
  if (app.visibility === 'private') return `private: visitors of ${app.allowVisitors.join(', ') || 'no group'}`;
  return app.publicPort ? `:${app.publicPort}` : app.remotePort ? `:${app.remotePort} (closed)` : 'chosen at activation';
}

/** A UDP app's dropped datagrams, all reasons together (TCP apps drop nothing: 0). */
function droppedTotal(app) {
  return app.udp ? Object.values(app.udp.dropped).reduce((sum, count) => sum + count, 0) : 0;
}

/** "in 4 MB/s · out 10 MB/s · PROXY v2", or "" for an app with neither. */
function describeLimits(app) {
  const parts = [];
  if (app.bandwidth.in !== null) parts.push(`limit in ${formatBytes(app.bandwidth.in)}/s`);
  if (app.bandwidth.out !== null) parts.push(`limit out ${formatBytes(app.bandwidth.out)}/s`);
  if (app.proxyProtocol !== null) parts.push(`PROXY ${app.proxyProtocol}`);
  return parts.join(' · ');
}

const rate = (bytes) => `${formatBytes(Math.round(bytes))}/s`;

/** The columns: what each shows and what it sorts by. `narrow: false` hides it under 900 px. */
const COLUMNS = [
  { key: 'group', label: 'group', sort: (r) => r.group },
  { key: 'app', label: 'app', sort: (r) => r.app.name },
  { key: 'type', label: 'type', sort: (r) => r.app.type, narrow: false },
  { key: 'port', label: 'port or names', sort: (r) => portText(r.app) },
  { key: 'state', label: 'state', sort: (r) => r.app.state },
  { key: 'conns', label: 'conns', sort: (r) => r.app.liveConns, numeric: true },
  { key: 'in', label: 'in/s', sort: (r) => r.rate.in, numeric: true },
  { key: 'out', label: 'out/s', sort: (r) => r.rate.out, numeric: true },
  { key: 'totals', label: 'total in · out', sort: (r) => r.app.bytesIn + r.app.bytesOut, numeric: true },
  { key: 'today', label: 'today', sort: (r) => r.app.today.bytesIn + r.app.today.bytesOut, numeric: true, narrow: false },
];

export class AppsTable {
  /**
   * `rateOf(key)`: { in, out } bytes per second now, from the live traffic; `liveSeries(key)`:
   * the live chart's series (second → bytes).
   */
  constructor(table, { rateOf, liveSeries }) {
    this.table = table;
    this.rateOf = rateOf;
    this.liveSeries = liveSeries;
    this.sortKey = 'group';
    this.descending = false;
    this.rows = new Map();
    /** group/app → { row, live, history, loaded } of the open detail rows. */
    this.open = new Map();
    this.groups = [];
    const head = el('tr');
    for (const column of COLUMNS) {
      const th = el('th', {
        scope: 'col',
        'data-sort': column.key,
        class: column.narrow === false ? 'wide-only' : undefined,
        tabindex: '0',
        text: column.label,
      });
      th.addEventListener('click', () => this.sortBy(column.key));
      th.addEventListener('keydown', (event) => event.key === 'Enter' && this.sortBy(column.key));
      head.append(th);
    }
    this.body = el('tbody');
    table.replaceChildren(el('thead', {}, head), this.body);
  }

  sortBy(key) {
    this.descending = this.sortKey === key ? !this.descending : COLUMNS.find((c) => c.key === key).numeric === true;
    this.sortKey = key;
    this.render(this.groups);
  }

  /** Rows in place (a row under the pointer stays the same element), in the chosen order. */
  render(groups) {
    this.groups = groups;
    const entries = groups.flatMap((group) =>
      group.apps.map((app) => ({ key: `${group.name}/${app.name}`, group: group.name, app, rate: this.rateOf(`${group.name}/${app.name}`) })),
    );
    const column = COLUMNS.find((c) => c.key === this.sortKey);
    entries.sort((a, b) => {
      const [x, y] = [column.sort(a), column.sort(b)];
      const order = typeof x === 'number' ? x - y : String(x).localeCompare(String(y));
      return (this.descending ? -order : order) || a.key.localeCompare(b.key);
    });
    for (const th of this.table.querySelectorAll('th')) th.dataset.order = th.dataset.sort === this.sortKey ? (this.descending ? 'desc' : 'asc') : '';
    const keys = new Set(entries.map((entry) => entry.key));
    for (const key of [...this.rows.keys()]) if (!keys.has(key)) this.rows.delete(key);
    for (const key of [...this.open.keys()]) if (!keys.has(key)) this.open.delete(key);
    const shown = [];
    for (const entry of entries) {
      shown.push(this.rowFor(entry));
      const detail = this.open.get(entry.key);
      if (detail) shown.push(detail.row);
    }
    if (shown.length === 0) shown.push(el('tr', {}, el('td', { colspan: String(COLUMNS.length), class: 'muted', text: 'no app registered' })));
    if (shown.length !== this.body.children.length || shown.some((row, i) => this.body.children[i] !== row)) this.body.replaceChildren(...shown);
  }

  rowFor({ key, group, app, rate: now }) {
    let row = this.rows.get(key);
    if (row === undefined) {
      row = el('tr', { class: 'app', 'data-app': key, tabindex: '0', title: 'show its traffic charts' });
      row.addEventListener('click', () => this.toggle(key));
      row.addEventListener('keydown', (event) => event.key === 'Enter' && this.toggle(key));
      this.rows.set(key, row);
    }
    const dropped = droppedTotal(app);
    const unit = app.type === 'udp' ? 'session' : 'conn';
    const limits = describeLimits(app);
    Object.assign(row.dataset, {
      state: app.state,
      type: app.type,
      liveConns: String(app.liveConns),
      dropped: String(dropped),
      bytesIn: String(app.bytesIn),
      bytesOut: String(app.bytesOut),
    });
    row.setAttribute('aria-expanded', String(this.open.has(key)));
    const cells = [
      el('td', { text: group }),
      el('td', {}, el('strong', { text: app.name }), limits ? el('span', { class: 'limits', title: limits, text: ' ⏱' }) : null),
      el('td', { class: 'wide-only' }, el('span', { class: 'badge type', text: app.type })),
      el('td', { class: 'port', text: portText(app) }),
      el('td', {}, el('span', { class: 'badge state', 'data-state': app.state, text: app.state })),
      el(
        'td',
        { class: 'num' },
        el('span', { class: 'live-conns', text: `${app.liveConns} ${unit}${app.liveConns === 1 ? '' : 's'}` }),
        app.type === 'udp' ? el('span', { class: 'dropped', title: droppedDetail(app), text: ` · ${dropped} dropped` }) : null,
      ),
      el('td', { class: 'num rate-in', text: rate(now.in) }),
      el('td', { class: 'num rate-out', text: rate(now.out) }),
      el('td', { class: 'num totals', text: `in ${formatBytes(app.bytesIn)} · out ${formatBytes(app.bytesOut)}` }),
      el('td', { class: 'num today wide-only', text: `${formatBytes(app.today.bytesIn)} · ${formatBytes(app.today.bytesOut)}` }),
    ];
    // Cells rewritten only when their text changed: selection and hover survive a refresh.
    const text = JSON.stringify(cells.map((cell) => [cell.className, cell.textContent]));
    if (row.dataset.text !== text) {
      row.replaceChildren(...cells);
      row.dataset.text = text;
    }
    return row;
  }

  toggle(key) {
    if (this.open.has(key)) this.open.delete(key);
    else {
      const live = createChart(key);
      const history = createChart(key, 'history');
      const row = el(
        'tr',
        { class: 'detail', 'data-detail': key },
        el(
          'td',
          { colspan: String(COLUMNS.length) },
          el(
            'div',
            { class: 'charts' },
            el('figure', {}, el('figcaption', { text: 'last 2 minutes' }), live),
            el('figure', {}, el('figcaption', { text: 'last 24 hours (one-minute averages)' }), history),
          ),
        ),
      );
      this.open.set(key, { row, live, history, loadedAt: 0 });
    }
    this.render(this.groups);
    this.draw();
  }

  /** Redraws the open charts; the history is fetched again once a minute. */
  draw() {
    const now = Math.floor(Date.now() / 1000);
    for (const [key, detail] of this.open) {
      drawChart(detail.live, this.liveSeries(key), now);
      if (Date.now() - detail.loadedAt > 60_000) {
        detail.loadedAt = Date.now();
        void this.loadHistory(key, detail);
      }
    }
    for (const row of this.body.querySelectorAll('tr.app')) {
      const rateNow = this.rateOf(row.dataset.app);
      row.querySelector('.rate-in').textContent = rate(rateNow.in);
      row.querySelector('.rate-out').textContent = rate(rateNow.out);
    }
  }

  async loadHistory(key, detail) {
    const [group, app] = [key.slice(0, key.indexOf('/')), key.slice(key.indexOf('/') + 1)];
    try {
      const { minutes } = await api('GET', `/api/history/${encodeURIComponent(group)}/${encodeURIComponent(app)}`);
      const series = new Map(minutes.map(([start, bytesIn, bytesOut]) => [Math.floor(start / 60_000), { in: bytesIn, out: bytesOut }]));
      drawChart(detail.history, series, Math.floor(Date.now() / 1000), HISTORY);
      detail.history.dataset.totalIn = String(minutes.reduce((sum, point) => sum + point[1], 0));
      detail.history.dataset.totalOut = String(minutes.reduce((sum, point) => sum + point[2], 0));
    } catch (error) {
      detail.history.dataset.error = error.message;
    }
  }
}

/** The reasons, for the count's tooltip: "oversize 2, sessionCap 0, ...". */
function droppedDetail(app) {
  return app.udp
    ? Object.entries(app.udp.dropped)
        .map(([reason, count]) => `${reason} ${count}`)
        .join(', ')
    : '';
}
