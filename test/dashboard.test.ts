import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadGroupFile } from '../src/config/index.js';
import { startAdmin } from './helpers/admin.js';
import { ARTIFACTS, launchChromium, skipWithoutChromium } from './helpers/browser.js';
import { startUdpEchoApp, UdpUser } from './helpers/udp.js';
import { startEchoApp } from './helpers/apps.js';
import { makeConfigDir, randomSecret } from './helpers/configs.js';
import { startClient, startServer } from './helpers/in-process.js';
import { connectTo, readBytes, waitForEvent } from './helpers/net.js';

const TOKEN = 'dashboard-test-token-0123456789';

/** Just enough of the page's `document` for the checks below. */
type Doc = { querySelector(selector: string): { dataset: Record<string, string | undefined> } | null };

test(
  'the dashboard shows a group turn active, its live connection and its traffic rise as a user sends data',
  { timeout: 90_000, skip: skipWithoutChromium },
  async () => {
    const echo = await startEchoApp();
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
    ]);
    const started = await startServer(config);
    const { server, events } = started;
    const api = await startAdmin(server, config, { token: TOKEN });
    const browser = await launchChromium();
    let user: Socket | undefined;
    let udpUser: UdpUser | undefined;
    let stopClient = (): void => {};
    after(async () => {
      user?.destroy();
      await browser.close();
      stopClient();
      await api.admin.close();
      await server.close();
      await echo.close();
      await udpUser?.close();
      await udpEcho.close();
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    // Nothing may leave for another host: the dashboard is self-contained.
    const foreign: string[] = [];
    page.on('request', (request) => {
      if (!request.url().startsWith(api.url)) foreign.push(request.url());
    });

    await page.goto(`${api.url}/#token=${TOKEN}`);
    await page.waitForSelector('[data-group="office"][data-state="ready"]', { timeout: 15_000 });
    await page.waitForSelector('#stream-status[data-state="live"]', { timeout: 15_000 });

    const { client } = startClient(loadGroupFile(config.groupFile('office')), started);
    stopClient = () => client.stop();
    const activated = await waitForEvent(events, (e) => e.type === 'group-activated', 'activation');
    assert.equal(activated.type, 'group-activated');
    await page.waitForSelector('[data-group="office"][data-state="in-use"]', { timeout: 15_000 });

    // A user connects and keeps sending: live conns 1, bytes and the chart rise.
    user = await connectTo(activated.apps.find((app) => app.name === 'echo')!.remotePort);
    const chunk = Buffer.alloc(16 * 1024, 0x61);
    let sent = 0;
    for (let i = 0; i < 8; i++) {
      user.write(chunk);
      await readBytes(user, chunk.length);
      sent += chunk.length;
    }
    await page.waitForSelector('tr[data-app="office/echo"][data-live-conns="1"]', { timeout: 15_000 });
    // Page-side functions reach the DOM through globalThis: this file is compiled without the DOM types.
    await page.waitForFunction(
      (min) => Number((globalThis as unknown as { document: Doc }).document.querySelector('tr[data-app="office/echo"]')?.dataset.bytesIn) >= min,
      sent,
      { timeout: 15_000 },
    );
    await page.waitForFunction(
      () => Number((globalThis as unknown as { document: Doc }).document.querySelector('canvas[data-chart="office/echo"]')?.dataset.peak) > 0,
      undefined,
      { timeout: 15_000 },
    );
    const log = await page.textContent('#events');
    assert.match(log ?? '', /group-activated/);
    assert.match(log ?? '', /work-conn-joined/);

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });
    assert.ok(existsSync(join(ARTIFACTS, 'dashboard.png')));

    // A UDP app is listed with its type, its sessions and its dropped datagrams.
    const udpPort = activated.apps.find((app) => app.name === 'dns')!.remotePort;
    udpUser = await UdpUser.open();
    await udpUser.request(udpPort, 'one datagram');
    await udpUser.send(udpPort, Buffer.alloc(65));
    await page.waitForSelector('tr[data-app="office/dns"][data-type="udp"][data-live-conns="1"][data-dropped="1"]', { timeout: 15_000 });
    assert.equal(await page.textContent('tr[data-app="office/dns"] td.type'), 'udp');
    assert.equal(await page.textContent('tr[data-app="office/echo"] td.dropped'), '–');

    // The user leaves: the live count falls back to 0.
    user.destroy();
    await page.waitForSelector('tr[data-app="office/echo"][data-live-conns="0"]', { timeout: 15_000 });
    assert.deepEqual(foreign, []);
    assert.deepEqual(pageErrors, []);
  },
);
