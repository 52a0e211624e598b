// The commonserver dashboard: state from /api/groups, live updates from /api/events (SSE).
// No build step and nothing from another host: plain modules, the charts drawn in SVG.
import { adoptTokenFromFragment, api, ApiError, apiText, eventStreamUrl, setToken, token } from './api.js';
import { AppsTable } from './apps-table.js';
import { CHART_SECONDS } from './chart.js';
import { EventLog, USER_CONNECTIONS } from './events.js';
import { openTokenPrompt, setUpGroupForm, setUpTokenPrompt } from './forms.js';
import { clock, el, formatBytes } from './format.js';
import { renderPools } from './pools.js';

/** Every change of a pool: the pools panel and the group cards both show it. */
const POOL_EVENT_TYPES = [
  'pool-opened',
  'pool-closed',
  'pool-member-joined',
  'pool-member-left',
  'pool-member-health',
  'pool-user-routed',
  'pool-user-refused',
];
/** Every ServerEvent type: an EventSource hands over only the named events it listens to. */
const EVENT_TYPES = [
  'listening',
  'group-registered',
  'group-registration-failed',
  'group-deregistered',
  'group-updated',
  'client-connected',
  'login-rejected',
  'group-activated',
  'app-failed',
  'app-refused',
  'app-opened',
  'app-closed',
  'heartbeat',
  'heartbeat-timeout',
  'user-conn-accepted',
  'user-conn-refused',
  'visitor-refused',
  'work-conn-requested',
  'work-conn-joined',
  'work-conn-pooled',
  'mux-conn',
  'work-conn-failed',
  'conn-closed',
  'traffic',
  'group-deactivated',
  'bad-peer',
  'login-throttled',
  'udp-session-opened',
  'udp-session-closed',
  'udp-dropped',
  'vhost-listening',
  'vhost-refused',
  ...POOL_EVENT_TYPES,
];
/** Changes of these mean the group cards are stale. */
const REFRESHING = new Set([
  'group-registered',
  'group-deregistered',
  'group-updated',
  'group-activated',
  'group-deactivated',
  'app-opened',
  'app-closed',
  'app-failed',
  'app-refused',
  'work-conn-joined',
  'conn-closed',
  'traffic',
  'udp-session-opened',
  'udp-session-closed',
  'udp-dropped',
  ...POOL_EVENT_TYPES,
]);

/** group/app → Map(epoch second → { in, out } bytes) for the traffic charts. */
const traffic = new Map();
const log = new EventLog();
/** group → the outcome of the last action on it, shown on its card. */
const actionStatus = new Map();
let groups = [];
let pools = [];
/** group → its card and the state it shows: a card is rebuilt only when its group changed. */
const cards = new Map();
/** Seconds of live traffic a rate (the table's in/s and out/s, the header's "now") is averaged over. */
const RATE_SECONDS = 5;
const appsTable = new AppsTable(document.getElementById('apps'), { rateOf, liveSeries: (key) => traffic.get(key) });
let source = null;
let refreshTimer = null;
let renderTimer = null;
let clusterPoll = null;
const CLUSTER_POLL_MS = 5000;

function recordTraffic(event) {
  const key = `${event.group}/${event.app}`;
  const second = Math.floor(Date.parse(event.at) / 1000);
  const series = traffic.get(key) ?? new Map();
  const bytes = series.get(second) ?? { in: 0, out: 0 };
  bytes.in += event.bytesIn;
  bytes.out += event.bytesOut;
  series.set(second, bytes);
  for (const s of series.keys()) if (s <= second - CHART_SECONDS) series.delete(s);
  traffic.set(key, series);
}

function take(event) {
  if (event.type === 'traffic') recordTraffic(event);
  if (log.add(event)) scheduleEventsRender();
  if (REFRESHING.has(event.type)) scheduleRefresh();
  if (event.type === 'group-deregistered') {
    for (const key of traffic.keys()) if (key.startsWith(`${event.group}/`)) traffic.delete(key);
  }
}

function stateBadge(state) {
  return el('span', { class: 'badge state', 'data-state': state, text: state });
}

function clientText(group) {
  if (group.client)
    return `client ${group.client.id} from ${group.client.address}, connected since ${clock(group.client.connectedSince)}, last heartbeat ${clock(group.client.lastHeartbeat)}`;
  if (group.lastDeactivation) return `left at ${clock(group.lastDeactivation.at)}: ${group.lastDeactivation.code} (${group.lastDeactivation.reason})`;
  return 'no client connected';
}

function groupCard(group) {
  const card = el('article', { class: 'group', 'data-group': group.name, 'data-state': group.state });
  const kick = el('button', {
    type: 'button',
    class: 'kick',
    'data-action': 'kick',
    disabled: group.state !== 'in-use',
    title: 'disconnect its client (it may log in again)',
    text: 'kick',
  });
  const remove = el('button', { type: 'button', class: 'remove danger', 'data-action': 'remove', title: 'remove the group from the registry', text: 'remove' });
  const hostFile = el('button', {
    type: 'button',
    'data-action': 'hostfile',
    title: 'download the file its host runs with (server, fingerprint and, behind the admin token, the secret)',
    text: 'host file',
  });
  hostFile.addEventListener('click', () => void downloadHostFile(group.name));
  kick.addEventListener('click', () => void kickGroup(group.name));
  remove.addEventListener('click', () => void removeGroup(group.name));
  card.append(el('header', {}, el('h3', { text: group.name }), stateBadge(group.state), el('span', { class: 'spacer' }), hostFile, kick, remove));
  card.append(el('p', { class: 'client' }));
  // A cluster node: which node serves the group, this one or another (whose events do not reach this page).
  if (group.node)
    card.append(
      el('p', {
        class: 'node',
        'data-node': group.node.name,
        text: `served by node ${group.node.name}${group.node.self ? ' (this node)' : ''} at ${group.node.advertise}:${group.node.commonPort}`,
      }),
    );
  const status = actionStatus.get(group.name);
  if (status) card.append(el('p', { class: `action-status ${status.ok ? 'ok' : 'bad'}`, role: 'status', text: status.text }));
  card.append(el('p', { class: 'apps-line', text: `${group.apps.length} app${group.apps.length === 1 ? '' : 's'} (in the apps table)` }));
  updateCard(card, group);
  return card;
}

/** What changes every second (heartbeats): written in place, so buttons stay put under the pointer. */
function updateCard(card, group) {
  card.querySelector('.client').textContent = clientText(group);
}

/** The card of `group`: rebuilt when its shape changed (state, apps, ports, an action's outcome), else updated. */
function cardFor(group) {
  const shape = JSON.stringify([group.state, group.client?.id, group.node?.name, group.apps.length, actionStatus.get(group.name)]);
  const cached = cards.get(group.name);
  if (cached?.shape === shape) {
    updateCard(cached.card, group);
    return cached.card;
  }
  const card = groupCard(group);
  cards.set(group.name, { shape, card });
  return card;
}

function renderGroups() {
  const root = document.getElementById('groups');
  const names = new Set(groups.map((group) => group.name));
  for (const name of cards.keys()) if (!names.has(name)) cards.delete(name);
  const shown = groups.map(cardFor);
  // Moving a node, even to where it was, drops its focus: the list changes only when it must.
  if (shown.length !== root.children.length || shown.some((card, i) => root.children[i] !== card)) root.replaceChildren(...shown);
  if (groups.length === 0) root.append(el('p', { class: 'muted', text: 'no group registered' }));
  const inUse = groups.filter((g) => g.state === 'in-use').length;
  document.getElementById('summary').textContent = `${groups.length} group${groups.length === 1 ? '' : 's'}, ${inUse} in use`;
  appsTable.render(groups);
  renderOverview();
  // Another node's activations send no event here: a cluster's page also looks again every few seconds.
  if (groups.some((group) => group.node) && clusterPoll === null) clusterPoll = setInterval(scheduleRefresh, CLUSTER_POLL_MS);
}

/** Bytes per second of group/app over the last RATE_SECONDS full seconds of live traffic. */
function rateOf(key) {
  const series = traffic.get(key);
  const now = Math.floor(Date.now() / 1000);
  const rate = { in: 0, out: 0 };
  for (let s = now - RATE_SECONDS; s < now; s++) {
    const bytes = series?.get(s);
    rate.in += (bytes?.in ?? 0) / RATE_SECONDS;
    rate.out += (bytes?.out ?? 0) / RATE_SECONDS;
  }
  return rate;
}

/** The header an operator reads first: who is online, how many users, how much traffic now and today. */
function renderOverview() {
  const count = (state) => groups.filter((group) => group.state === state).length;
  const apps = groups.flatMap((group) => group.apps.map((app) => ({ key: `${group.name}/${app.name}`, app })));
  const now = apps.reduce(
    (sum, { key }) => {
      const rate = rateOf(key);
      return { in: sum.in + rate.in, out: sum.out + rate.out };
    },
    { in: 0, out: 0 },
  );
  const stats = {
    online: count('in-use'),
    offline: count('ready'),
    lost: count('lost'),
    users: apps.reduce((sum, { app }) => sum + app.liveConns, 0),
    'now-in': `${formatBytes(Math.round(now.in))}/s`,
    'now-out': `${formatBytes(Math.round(now.out))}/s`,
    'today-in': formatBytes(apps.reduce((sum, { app }) => sum + app.today.bytesIn, 0)),
    'today-out': formatBytes(apps.reduce((sum, { app }) => sum + app.today.bytesOut, 0)),
  };
  for (const [stat, value] of Object.entries(stats)) {
    const field = document.querySelector(`#overview [data-stat="${stat}"]`);
    if (field.textContent !== String(value)) field.textContent = String(value);
  }
}

function drawCharts() {
  appsTable.draw();
  renderOverview();
}

function fillSelect(select, values, label, current) {
  const options = [
    el('option', { value: '', text: `every ${label}` }),
    ...values.map((value) => el('option', { value, text: value === USER_CONNECTIONS ? 'user connections (counted)' : value })),
  ];
  if (current && !values.includes(current)) options.push(el('option', { value: current, text: current }));
  select.replaceChildren(...options);
  select.value = current;
}

function renderEvents() {
  const choices = log.choices();
  fillSelect(document.getElementById('filter-group'), choices.groups, 'group', log.filters.group);
  fillSelect(document.getElementById('filter-app'), choices.apps, 'app', log.filters.app);
  fillSelect(document.getElementById('filter-type'), choices.types, 'type', log.filters.type);
  log.render(document.getElementById('events'));
}

function scheduleEventsRender() {
  if (renderTimer !== null) return;
  renderTimer = setTimeout(() => {
    renderTimer = null;
    renderEvents();
  }, 200);
}

/** Coalesces the refreshes a burst of events asks for. */
function scheduleRefresh() {
  if (refreshTimer !== null) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    void refreshGroups();
  }, 250);
}

async function refreshGroups() {
  try {
    groups = (await api('GET', '/api/groups')).groups;
    setBanner('');
    renderGroups();
    pools = (await api('GET', '/api/pools')).pools;
    renderPools(document.getElementById('pools'), pools);
  } catch (error) {
    failed(error, 'cannot load the groups');
  }
}

/** Says what went wrong; a refused token brings the prompt up. */
function failed(error, what) {
  const message = `${what}: ${error.message}`;
  setBanner(message);
  if (error instanceof ApiError && error.status === 401)
    openTokenPrompt(token() ? 'the server refused this token' : 'this server needs its admin token', { automatic: true });
  return message;
}

function setBanner(text) {
  const banner = document.getElementById('banner');
  banner.textContent = text;
  banner.hidden = text === '';
}

/** Runs an action on a group and shows its outcome on the group's card. */
async function act(name, verb, done, request) {
  try {
    await request();
    actionStatus.set(name, { ok: true, text: `${done} at ${clock(Date.now())}` });
  } catch (error) {
    actionStatus.set(name, { ok: false, text: failed(error, `${verb} refused`) });
  }
  renderGroups();
  scheduleRefresh();
}

/** The group's host file, saved as NAME.yaml by the browser. */
function downloadHostFile(name) {
  return act(name, 'host file', `host file ${name}.yaml downloaded`, async () => {
    const text = await apiText(`/api/groups/${encodeURIComponent(name)}/hostfile`);
    const link = el('a', { href: URL.createObjectURL(new Blob([text], { type: 'application/yaml' })), download: `${name}.yaml` });
    document.body.append(link);
    link.click();
    link.remove();
    URL.revokeObjectURL(link.href);
  });
}

function kickGroup(name) {
  return act(name, 'kick', 'kicked: its client was told KICKED', () => api('POST', `/api/groups/${encodeURIComponent(name)}/kick`));
}

function removeGroup(name) {
  if (!confirm(`Remove group ${name}? Its file is deleted and its client disconnected.`)) return Promise.resolve();
  return act(name, 'remove', 'removed', () => api('DELETE', `/api/groups/${encodeURIComponent(name)}`));
}

function connectStream() {
  source?.close();
  const status = document.getElementById('stream-status');
  source = new EventSource(eventStreamUrl());
  source.onopen = () => {
    status.dataset.state = 'live';
    status.textContent = 'live';
    scheduleRefresh();
  };
  const stream = source;
  source.onerror = () => {
    status.dataset.state = 'down';
    status.textContent = 'stream lost, retrying…';
    // A refused stream (401) is not retried by the browser itself.
    if (stream.readyState === EventSource.CLOSED && stream === source) setTimeout(() => stream === source && connectStream(), 3000);
  };
  const onEvent = (message) => take(JSON.parse(message.data));
  for (const type of EVENT_TYPES) source.addEventListener(type, onEvent);
}

/** (Re)loads everything with the current token. */
async function start() {
  try {
    const recent = (await api('GET', '/api/events/recent')).events;
    log.items.length = 0;
    log.folds.clear();
    for (const event of recent) take(event);
    renderEvents();
  } catch (error) {
    failed(error, 'cannot load the events');
  }
  await refreshGroups();
  connectStream();
}

function setUpFilters() {
  for (const [id, key] of [
    ['filter-group', 'group'],
    ['filter-app', 'app'],
    ['filter-type', 'type'],
  ]) {
    document.getElementById(id).addEventListener('change', (event) => {
      log.filters[key] = event.target.value;
      if (key === 'group') log.filters.app = '';
      renderEvents();
    });
  }
  document.getElementById('show-pairing-ids').addEventListener('change', (event) => {
    log.showPairingIds = event.target.checked;
    renderEvents();
  });
}

adoptTokenFromFragment();
setUpFilters();
setUpTokenPrompt((value) => {
  setToken(value);
  void start();
});
setUpGroupForm(async (body) => {
  const answer = await api('POST', '/api/groups', body);
  scheduleRefresh();
  return answer;
}, failed);
setInterval(drawCharts, 1000);
void start();
