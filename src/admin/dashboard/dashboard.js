// The commonserver dashboard: state from /api/groups, live updates from /api/events (SSE).
// No build step and no outside host: plain modules, canvas drawn by hand.
const token = new URLSearchParams(location.hash.slice(1)).get('token');
const headers = token ? { authorization: `Bearer ${token}` } : {};
const CHART_SECONDS = 60;
const MAX_LOG = 100;

/** group/app → Map(second → bytes) for the traffic charts. */
const traffic = new Map();
let groups = [];
let refreshTimer = null;

async function api(path) {
  const res = await fetch(path, { headers });
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.json();
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function time(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : '–';
}

function renderGroups() {
  const root = document.getElementById('groups');
  root.replaceChildren();
  if (groups.length === 0) root.append(el('p', { class: 'muted', text: 'no group registered' }));
  for (const group of groups) {
    const card = el('div', { class: 'group', 'data-group': group.name, 'data-state': group.state });
    card.append(el('h3', {}, el('span', { text: group.name }), el('span', { class: 'badge state', 'data-state': group.state, text: group.state })));
    const client = group.client
      ? `client ${group.client.id} from ${group.client.address}, connected since ${time(group.client.connectedSince)}, last heartbeat ${time(group.client.lastHeartbeat)}`
      : group.lastDeactivation
        ? `left at ${time(group.lastDeactivation.at)}: ${group.lastDeactivation.code} (${group.lastDeactivation.reason})`
        : 'no client connected';
    card.append(el('div', { class: 'client', text: client }));
    const table = el('table', {}, el('tr', {}, ...['app', 'type', 'public port', 'state', 'live conns / sessions', 'in', 'out', 'dropped', 'traffic (60 s)'].map((h) => el('th', { text: h }))));
    for (const app of group.apps) {
      const key = `${group.name}/${app.name}`;
      const canvas = el('canvas', { class: 'chart', width: '220', height: '40', 'data-chart': key });
      table.append(
        el('tr', { 'data-app': key, 'data-type': app.type, 'data-live-conns': String(app.liveConns), 'data-bytes-in': String(app.bytesIn), 'data-bytes-out': String(app.bytesOut), 'data-dropped': String(droppedTotal(app)) },
          el('td', { text: app.name }),
          el('td', { class: 'type', text: app.type }),
          el('td', { class: 'num', text: app.publicPort ?? (app.remotePort || 'auto') }),
          el('td', { text: app.state }),
          el('td', { class: 'num live-conns', text: String(app.liveConns) }),
          el('td', { class: 'num bytes-in', text: formatBytes(app.bytesIn) }),
          el('td', { class: 'num bytes-out', text: formatBytes(app.bytesOut) }),
          el('td', { class: 'num dropped', title: droppedDetail(app), text: app.udp ? String(droppedTotal(app)) : '–' }),
          el('td', {}, canvas)),
      );
    }
    card.append(table);
    root.append(card);
  }
  const inUse = groups.filter((g) => g.state === 'in-use').length;
  document.getElementById('summary').textContent = `${groups.length} group(s), ${inUse} in use`;
  drawCharts();
}

/** A UDP app's dropped datagrams, all reasons together (TCP apps drop nothing: 0). */
function droppedTotal(app) {
  return app.udp ? Object.values(app.udp.dropped).reduce((sum, count) => sum + count, 0) : 0;
}

/** The reasons, for the cell's tooltip: "oversize 2, sessionCap 0, ...". */
function droppedDetail(app) {
  return app.udp ? Object.entries(app.udp.dropped).map(([reason, count]) => `${reason} ${count}`).join(', ') : '';
}

function drawCharts() {
  const now = Math.floor(Date.now() / 1000);
  for (const canvas of document.querySelectorAll('canvas[data-chart]')) {
    const series = traffic.get(canvas.dataset.chart) ?? new Map();
    const values = [];
    for (let s = now - CHART_SECONDS + 1; s <= now; s++) values.push(series.get(s) ?? 0);
    const max = Math.max(1, ...values);
    const ctx = canvas.getContext('2d');
    const { width, height } = canvas;
    ctx.clearRect(0, 0, width, height);
    ctx.strokeStyle = '#2a3441';
    ctx.strokeRect(0.5, 0.5, width - 1, height - 1);
    ctx.fillStyle = 'rgba(88, 166, 255, 0.35)';
    ctx.strokeStyle = '#58a6ff';
    ctx.beginPath();
    ctx.moveTo(0, height);
    values.forEach((value, i) => ctx.lineTo((i / (CHART_SECONDS - 1)) * width, height - (value / max) * (height - 4)));
    ctx.lineTo(width, height);
    ctx.closePath();
    ctx.fill();
    ctx.stroke();
    const peak = Math.max(0, ...values);
    canvas.title = `peak ${formatBytes(peak)}/s`;
    canvas.dataset.peak = String(peak);
  }
}

function recordTraffic(event) {
  const key = `${event.group}/${event.app}`;
  const second = Math.floor(Date.parse(event.at) / 1000);
  const series = traffic.get(key) ?? new Map();
  series.set(second, (series.get(second) ?? 0) + event.bytesIn + event.bytesOut);
  for (const s of series.keys()) if (s < second - CHART_SECONDS) series.delete(s);
  traffic.set(key, series);
}

function describe(event) {
  const { type, at, ...rest } = event;
  return Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' ');
}

function logEvent(event) {
  const list = document.getElementById('events');
  list.prepend(el('li', {}, el('span', { class: 'muted', text: `${time(event.at)} ` }), el('span', { class: 'type', text: event.type }), ` ${describe(event)}`));
  while (list.children.length > MAX_LOG) list.lastElementChild.remove();
}

/** Coalesces the refreshes a burst of events asks for. */
function scheduleRefresh() {
  if (refreshTimer !== null) return;
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    try {
      groups = (await api('/api/groups')).groups;
      renderGroups();
    } catch (error) {
      console.error(error);
    }
  }, 250);
}

function connectStream() {
  const status = document.getElementById('stream-status');
  const source = new EventSource(`/api/events${token ? `?token=${encodeURIComponent(token)}` : ''}`);
  source.onopen = () => {
    status.dataset.state = 'live';
    status.textContent = 'live';
    scheduleRefresh();
  };
  source.onerror = () => {
    status.dataset.state = 'down';
    status.textContent = 'stream lost, retrying…';
  };
  source.onmessage = () => {};
  const onEvent = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === 'traffic') recordTraffic(event);
    if (event.type !== 'heartbeat') logEvent(event);
    scheduleRefresh();
  };
  for (const type of ['listening', 'group-registered', 'group-registration-failed', 'group-deregistered', 'group-updated', 'client-connected', 'login-rejected',
    'group-activated', 'app-failed', 'app-opened', 'app-closed', 'heartbeat', 'heartbeat-timeout', 'user-conn-accepted', 'user-conn-refused',
    'work-conn-requested', 'work-conn-joined', 'work-conn-failed', 'conn-closed', 'traffic', 'group-deactivated', 'bad-peer',
    'udp-session-opened', 'udp-session-closed', 'udp-dropped']) {
    source.addEventListener(type, onEvent);
  }
}

async function start() {
  try {
    const recent = (await api('/api/events/recent')).events;
    for (const event of recent) {
      if (event.type === 'traffic') recordTraffic(event);
      if (event.type !== 'heartbeat') logEvent(event);
    }
    groups = (await api('/api/groups')).groups;
    renderGroups();
  } catch (error) {
    document.getElementById('groups').replaceChildren(el('p', { class: 'muted', text: `cannot load: ${error.message}${token ? '' : ' (open the dashboard as /#token=TOKEN if the server has one)'}` }));
  }
  connectStream();
  setInterval(drawCharts, 1000);
}

start();
