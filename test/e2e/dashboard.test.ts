import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadGroupFile } from '../../src/config/index.js';
import type { ServerEvent, ServerEventType } from '../../src/server/index.js';
import { startAdmin } from '../helpers/admin.js';
import { startApp, startEchoApp, unusedPort } from '../helpers/apps.js';
import { startUdpEchoApp, UdpUser } from '../helpers/udp.js';
import { artifactsFor, imageStats, launchChromium, skipWithoutChromium, waitInPage } from '../helpers/browser.js';
import { makeConfigDir, randomSecret } from '../helpers/configs.js';
import { startClient, startServer } from '../helpers/in-process.js';
import { closedWithin, connectTo, echoRoundTrip, readBytes, waitForEvent } from '../helpers/net.js';
import { REPO_ROOT } from '../helpers/paths.js';

const TOKEN = 'dashboard-test-token-0123456789';
const WAIT = { timeout: 10_000 };

test(
  'the dashboard: a chart of in and out with a time axis, folded and filtered events, kick, remove and add with the token (refused without), no overflow at 800 px',
  { timeout: 60_000, skip: skipWithoutChromium },
  async () => {
    // Chromium starts while the server and groups are set up: it is the slowest part.
    const launching = launchChromium();
    const echo = await startEchoApp();
    // Takes uploads and answers nothing: its chart must show in without out.
    const sink = await startApp((socket) => {
      socket.on('error', () => {});
      socket.resume();
      socket.on('end', () => socket.end());
    });
    const udpEcho = await startUdpEchoApp();
    const config = makeConfigDir([
      {
        name: 'office',
        secret: randomSecret(),
        apps: [
          { name: 'echo', localPort: echo.port },
          { name: 'dns', localPort: udpEcho.port, type: 'udp', udp: { maxDatagramBytes: 64 } },
        ],
      },
      { name: 'branch', secret: randomSecret(), apps: [{ name: 'upload', localPort: sink.port }] },
    ]);
    const started = await startServer(config);
    const { server, events } = started;
    const api = await startAdmin(server, config, { token: TOKEN });
    const browser = await launching;
    const out = artifactsFor('dashboard');
    let user: Socket | undefined;
    let udpUser: UdpUser | undefined;
    const clients = ['office', 'branch'].map((name) => startClient(loadGroupFile(config.groupFile(name)), started, { clientId: `dashboard-${name}` }).client);
    after(async () => {
      user?.destroy();
      await browser.close();
      for (const client of clients) client.stop();
      await api.admin.close();
      await server.close();
      await echo.close();
      await sink.close();
      await udpUser?.close();
      await udpEcho.close();
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    // Nothing may leave for another host: the dashboard is self-contained.
    const foreign: string[] = [];
    page.on('request', (request) => {
      if (!request.url().startsWith(api.url)) foreign.push(request.url());
    });
    page.on('dialog', (dialog) => void dialog.accept());

    // The token moves from the fragment to sessionStorage and leaves the address bar.
    await page.goto(`${api.url}/#token=${TOKEN}`);
    await page.waitForSelector('#stream-status[data-state="live"]', WAIT);
    assert.ok(!page.url().includes(TOKEN), page.url());
    assert.equal(await page.evaluate('sessionStorage.getItem("ntp-admin-token")'), TOKEN);
    await page.waitForSelector('.group[data-group="office"][data-state="in-use"]', WAIT);
    await page.waitForSelector('.group[data-group="branch"][data-state="in-use"]', WAIT);
    const activated = await waitForEvent(events, (e) => e.type === 'group-activated' && e.group === 'office', 'office active');
    assert.equal(activated.type, 'group-activated');
    const port = activated.apps.find((app) => app.name === 'echo')!.remotePort;
    const branch = await waitForEvent(events, (e) => e.type === 'group-activated' && e.group === 'branch', 'branch active');
    assert.equal(branch.type, 'group-activated');
    const uploader = await connectTo(branch.apps[0]!.remotePort);
    uploader.end(Buffer.alloc(512 * 1024, 0x62));
    await closedWithin(uploader);

    // Short users: folded into one count, their pairing ids hidden until asked for.
    const joined: string[] = [];
    const joins = events.subscribe((e: ServerEvent) => e.type === 'work-conn-joined' && joined.push(e.pairingId));
    for (let i = 0; i < 5; i++) await echoRoundTrip(port, Buffer.from(`short user ${i}`));
    // A long user sends for a few seconds: traffic both ways, a live conn.
    user = await connectTo(port);
    const chunk = Buffer.alloc(32 * 1024, 0x61);
    const until = Date.now() + 1500;
    while (Date.now() < until) {
      user.write(chunk);
      await readBytes(user, chunk.length);
    }
    joins.unsubscribe();
    await page.waitForSelector('.app[data-app="office/echo"][data-live-conns="1"]', WAIT);
    // Charts on demand: a row's click opens them.
    await page.click('.app[data-app="office/echo"]');
    await page.click('.app[data-app="branch/upload"]');
    const chart = 'svg[data-chart="office/echo"]';
    await waitInPage(
      page,
      `Number(document.querySelector('${chart}')?.dataset.peakIn) > 0 && Number(document.querySelector('${chart}')?.dataset.peakOut) > 0`,
      WAIT,
    );
    // Two lines, one per direction, that leave the baseline; a clock time axis; a rate unit.
    for (const series of ['in', 'out']) {
      const ys = ((await page.locator(`${chart} polyline.${series}`).getAttribute('points')) ?? '').split(' ').map((point) => Number(point.split(',')[1]));
      assert.ok(new Set(ys).size > 1, `the ${series} line is not flat`);
    }
    // Separate series: the upload-only app has traffic in and none out.
    const upload = 'svg[data-chart="branch/upload"]';
    await waitInPage(page, `Number(document.querySelector('${upload}')?.dataset.peakIn) > 0`, WAIT);
    assert.equal(await page.locator(upload).getAttribute('data-peak-out'), '0');
    const outYs = ((await page.locator(`${upload} polyline.out`).getAttribute('points')) ?? '').split(' ').map((point) => point.split(',')[1]);
    assert.equal(new Set(outYs).size, 1, 'nothing out: a flat line');
    const ticks = await page.locator(`${chart} .tick-x`).allTextContents();
    assert.ok(ticks.length >= 3 && ticks.every((tick) => /^\d\d:\d\d:\d\d$/.test(tick)), `time axis: ${ticks.join(', ')}`);
    assert.match((await page.locator(`${chart} .tick-y`).allTextContents()).join(' '), /\d (B|KiB|MiB|GiB)\/s/);
    const box = await page.locator(chart).boundingBox();
    assert.ok(box !== null && box.width > 300 && box.height > 60, `chart size ${JSON.stringify(box)}`);
    assert.match((await page.locator('.app[data-app="office/echo"] .totals').textContent()) ?? '', /in \d+(\.\d+)? (KiB|MiB) · out \d+(\.\d+)? (KiB|MiB)/);

    const fold = page.locator('#events li[data-kind="fold"][data-group="office"][data-app="echo"]').first();
    await waitInPage(
      page,
      `[...document.querySelectorAll('#events li[data-kind="fold"][data-app="echo"]')].reduce((n, li) => n + Number(li.dataset.users), 0) >= 6`,
      WAIT,
    );
    assert.match((await fold.textContent()) ?? '', /\d+ user connections/);
    assert.equal(await page.locator('#events li[data-type="conn-closed"], #events li[data-type="work-conn-joined"]').count(), 0, 'no line per connection');
    assert.ok(joined.length >= 6);
    const eventsText = async () => (await page.locator('#events').textContent()) ?? '';
    for (const id of joined) assert.ok(!(await eventsText()).includes(id), 'pairing ids hidden');
    await page.check('#show-pairing-ids');
    await waitInPage(page, `document.querySelector('#events').textContent.includes('${joined[0]}')`, WAIT);
    await page.uncheck('#show-pairing-ids');

    // A UDP app shows its type, its sessions and its dropped datagrams.
    const udpPort = activated.apps.find((app) => app.name === 'dns')!.remotePort;
    udpUser = await UdpUser.open();
    await udpUser.request(udpPort, 'one datagram');
    await udpUser.send(udpPort, Buffer.alloc(65));
    await page.waitForSelector('.app[data-app="office/dns"][data-type="udp"][data-live-conns="1"][data-dropped="1"]', WAIT);
    assert.equal(await page.textContent('.app[data-app="office/dns"] .badge.type'), 'udp');
    assert.match((await page.textContent('.app[data-app="office/dns"] .live-conns')) ?? '', /^1 session$/);
    assert.equal(await page.locator('.app[data-app="office/echo"] .dropped').count(), 0, 'a TCP app drops nothing');

    // Filters: group, app, type.
    await page.selectOption('#filter-group', 'branch');
    const shown = page.locator('#events li[data-group]');
    assert.ok((await shown.count()) > 0);
    assert.deepEqual([...new Set(await shown.evaluateAll((items) => items.map((item) => item.getAttribute('data-group'))))], ['branch']);
    await page.selectOption('#filter-group', 'office');
    await page.selectOption('#filter-app', 'echo');
    assert.deepEqual(
      [...new Set(await shown.evaluateAll((items) => items.map((item) => `${item.getAttribute('data-group')}/${item.getAttribute('data-app')}`)))],
      ['office/echo'],
    );
    await page.selectOption('#filter-group', '');
    await page.selectOption('#filter-type', 'group-activated');
    assert.deepEqual((await shown.evaluateAll((items) => items.map((item) => item.getAttribute('data-group')))).sort(), ['branch', 'office']);
    await page.selectOption('#filter-type', '');

    const wide = join(out, 'dashboard-1280.png');
    const stats = await imageStats(browser, await page.screenshot({ path: wide, fullPage: true }));
    assert.ok(stats.width === 1280 && stats.colours > 20, `screenshot ${JSON.stringify(stats)}`);
    const chartShot = await imageStats(browser, await page.locator(chart).screenshot({ path: join(out, 'chart.png') }));
    assert.ok(chartShot.colours > 3, `chart screenshot ${JSON.stringify(chartShot)}`);

    // 800 px: one column, nothing wider than the window.
    await page.setViewportSize({ width: 800, height: 900 });
    await waitInPage(page, 'document.documentElement.scrollWidth <= 800', WAIT);
    assert.equal(await page.evaluate('document.documentElement.scrollWidth'), 800);
    const narrow = await imageStats(browser, await page.screenshot({ path: join(out, 'dashboard-800.png'), fullPage: true }));
    assert.ok(narrow.width === 800 && narrow.colours > 20, `screenshot ${JSON.stringify(narrow)}`);
    const narrowChart = await page.locator(chart).boundingBox();
    assert.ok(narrowChart !== null && narrowChart.width > 300 && narrowChart.x + narrowChart.width <= 800, `chart at 800 px: ${JSON.stringify(narrowChart)}`);
    user.destroy();

    // Without the right token, kick, remove and add are refused by the server, and the page says so.
    await page.click('#token-button');
    await page.fill('#token-input', 'not-the-token-at-all');
    await page.click('#token-form button[type="submit"]');
    await page.waitForSelector('#token-dialog:not([hidden])', WAIT);
    assert.match((await page.locator('#token-message').textContent()) ?? '', /refused this token/);
    await page.click('#token-close');
    const refusal = /kick refused: a valid admin token is required/;
    await page.click('.group[data-group="office"] button[data-action="kick"]');
    await page.waitForSelector('.group[data-group="office"] .action-status.bad', WAIT);
    assert.match((await page.locator('.group[data-group="office"] .action-status').textContent()) ?? '', refusal);
    await page.click('.group[data-group="branch"] button[data-action="remove"]');
    await page.waitForSelector('.group[data-group="branch"] .action-status.bad', WAIT);
    assert.match((await page.locator('.group[data-group="branch"] .action-status').textContent()) ?? '', /remove refused: a valid admin token is required/);
    await page.click('#add-group summary');
    await page.fill('#group-form [name="name"]', 'added');
    await page.click('#generate-secret');
    await page.fill('#group-form [name="apps[0].name"]', 'svc');
    await page.fill('#group-form [name="apps[0].local"]', '127.0.0.1:9');
    await page.click('#group-form-submit');
    const formError = page.locator('#group-form .form-error');
    await formError.filter({ hasText: /./ }).waitFor(WAIT);
    assert.match((await formError.textContent()) ?? '', /not added: a valid admin token is required/);
    assert.ok(server.inUseGroup.has('office') && server.readyGroup.has('branch') && !server.readyGroup.has('added'), 'nothing refused was done');

    // With the token: kick works, the client is told KICKED.
    await page.click('#token-button');
    await page.fill('#token-input', TOKEN);
    await page.click('#token-form button[type="submit"]');
    await page.waitForSelector('#banner[hidden]', { state: 'attached', ...WAIT });
    await page.click('.group[data-group="office"] button[data-action="kick"]');
    await waitForEvent(events, (e) => e.type === 'group-deactivated' && e.group === 'office' && e.code === 'KICKED', 'office kicked');
    await page.waitForSelector('.group[data-group="office"] .action-status.ok', WAIT);

    // Add a group: the API's own error shows next to the field it names; then a good one.
    await page.fill('#group-form [name="apps[0].local"]', 'localhost-without-port');
    await page.click('#group-form-submit');
    const localError = page.locator('#group-form [data-error-for="apps[0].local"]');
    await localError.filter({ hasText: /./ }).waitFor(WAIT);
    assert.equal(await formError.textContent(), '', 'the earlier refusal is cleared');
    const secret = await page.inputValue('#group-form [name="secret"]');
    const direct = await api.request('POST', '/api/groups', { name: 'added', secret, apps: [{ name: 'svc', local: 'localhost-without-port', remotePort: 0 }] });
    assert.equal(direct.status, 400);
    assert.equal(await localError.textContent(), direct.body.error.message, "the message is the API's own");
    await page.fill('#group-form [name="apps[0].local"]', '127.0.0.1:9');
    await page.click('#group-form-submit');
    await page.waitForSelector('.group[data-group="added"][data-state="ready"]', WAIT);
    assert.ok(server.readyGroup.has('added'));
    assert.match(readFileSync(config.groupFile('added'), 'utf8'), /local: 127\.0\.0\.1:9/);

    // Remove it again (the confirm dialog is accepted).
    await page.click('.group[data-group="added"] button[data-action="remove"]');
    await page.waitForSelector('.group[data-group="added"]', { state: 'detached', ...WAIT });
    assert.ok(!server.readyGroup.has('added'));

    // A fresh tab without a token gets the prompt, not an error page; the token opens it.
    const fresh = await browser.newPage({ viewport: { width: 800, height: 700 } });
    fresh.on('pageerror', (error) => pageErrors.push(error.message));
    await fresh.goto(`${api.url}/`);
    await fresh.waitForSelector('#token-dialog:not([hidden])', WAIT);
    assert.match((await fresh.locator('#token-message').textContent()) ?? '', /needs its admin token/);
    await fresh.fill('#token-input', TOKEN);
    await fresh.click('#token-form button[type="submit"]');
    await fresh.waitForSelector('.group[data-group="branch"]', WAIT);
    assert.ok(!fresh.url().includes(TOKEN));

    assert.deepEqual(foreign, []);
    assert.deepEqual(pageErrors, []);
  },
);

test("the dashboard's pool table shows each member's health as its checks report it", { timeout: 60_000, skip: skipWithoutChromium }, async () => {
  const app = await startEchoApp();
  const config = makeConfigDir([
    {
      name: 'office',
      secret: randomSecret(),
      apps: [
        {
          name: 'web',
          localPort: app.port,
          pool: 'web',
          remotePort: await unusedPort(),
          healthCheck: { interval: '200ms', timeout: '200ms', failures: 1, successes: 1 },
        },
      ],
    },
  ]);
  const started = await startServer(config);
  const api = await startAdmin(started.server, config, { token: TOKEN });
  const browser = await launchChromium();
  const { client } = startClient(loadGroupFile(config.groupFile('office')), started);
  after(async () => {
    await browser.close();
    client.stop();
    await api.admin.close();
    await started.server.close();
    await app.close();
  });
  const opened = await waitForEvent(started.events, (e) => e.type === 'pool-opened', 'the pool opening');
  const page = await browser.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (error) => pageErrors.push(error.message));
  await page.goto(`${api.url}/#token=${TOKEN}`);
  await page.waitForSelector('tr[data-member="web/office"][data-health="healthy"]', { timeout: 15_000 });
  assert.match((await page.textContent('[data-pool="web"] h3')) ?? '', new RegExp(`web :${(opened as { port: number }).port}`));
  await app.close();
  await page.waitForSelector('tr[data-member="web/office"][data-health="unhealthy"]', { timeout: 15_000 });
  assert.match((await page.textContent('tr[data-member="web/office"]')) ?? '', /ECONNREFUSED/);
  assert.deepEqual(pageErrors, []);
});

/** Every server event type; a new one fails to compile here until it is listed. */
const SERVER_EVENT_TYPES: Record<ServerEventType, true> = {
  listening: true,
  'group-registered': true,
  'group-registration-failed': true,
  'group-deregistered': true,
  'group-updated': true,
  'client-connected': true,
  'login-rejected': true,
  'group-activated': true,
  'app-failed': true,
  'app-refused': true,
  'app-opened': true,
  'app-closed': true,
  heartbeat: true,
  'heartbeat-timeout': true,
  'user-conn-accepted': true,
  'user-conn-refused': true,
  'visitor-refused': true,
  'work-conn-requested': true,
  'work-conn-joined': true,
  'work-conn-pooled': true,
  'mux-conn': true,
  'work-conn-failed': true,
  'conn-closed': true,
  traffic: true,
  'group-deactivated': true,
  'bad-peer': true,
  'login-throttled': true,
  'udp-session-opened': true,
  'udp-session-closed': true,
  'udp-dropped': true,
  'pool-opened': true,
  'pool-closed': true,
  'pool-member-joined': true,
  'pool-member-left': true,
  'pool-member-health': true,
  'pool-user-routed': true,
  'pool-user-refused': true,
  'vhost-listening': true,
  'vhost-refused': true,
};

test('the dashboard listens to every server event type (an EventSource delivers only the named events it listens to)', () => {
  const source = readFileSync(join(REPO_ROOT, 'src', 'admin', 'dashboard', 'dashboard.js'), 'utf8');
  const listText = (name: string): string => new RegExp(`const ${name} = \\[([^\\]]*)\\]`).exec(source)?.[1] ?? '';
  const names = (text: string): string[] => [...text.matchAll(/'([a-z-]+)'/g)].map((match) => match[1]!);
  const list = listText('EVENT_TYPES');
  // The pool events are one list of their own, spread into EVENT_TYPES.
  const listed = [...names(list), ...(list.includes('...POOL_EVENT_TYPES') ? names(listText('POOL_EVENT_TYPES')) : [])];
  assert.deepEqual([...listed].sort(), Object.keys(SERVER_EVENT_TYPES).sort());
});
