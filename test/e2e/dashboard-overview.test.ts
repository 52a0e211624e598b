import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { Page } from 'playwright-core';
import { parse } from 'yaml';
import { loadGroupFile } from '../../src/config/index.js';
import { startAdmin, type TestAdmin } from '../helpers/admin.js';
import { startEchoApp } from '../helpers/apps.js';
import { artifactsFor, imageStats, launchChromium, skipWithoutChromium, waitInPage } from '../helpers/browser.js';
import { makeConfigDir, randomSecret, type TestGroup } from '../helpers/configs.js';
import { startClient, startServer, type StartedServer } from '../helpers/in-process.js';
import { echoRoundTrip, waitForEvent } from '../helpers/net.js';

const TOKEN = 'overview-test-token-0123456789';
const WAIT = { timeout: 15_000 };
/** The page an operator keeps open: 12 apps must not make it long (eight apps made a 3,316 px page with a chart each). */
const MAX_PAGE_HEIGHT = 2000;

async function pageSize(page: Page): Promise<{ width: number; height: number }> {
  return (await page.evaluate('({ width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight })')) as {
    width: number;
    height: number;
  };
}

test(
  'the dashboard with 2 groups and 12 apps: an overview header, one sortable table, charts on demand, no overflow at 1280 and 800 px, the history back after a server restart, a host file button',
  { timeout: 90_000, skip: skipWithoutChromium },
  async () => {
    const launching = launchChromium();
    const echo = await startEchoApp();
    const groups: TestGroup[] = ['alpha', 'beta'].map((name) => ({
      name,
      secret: randomSecret(),
      apps: Array.from({ length: 6 }, (_, i) => ({ name: `app${i}`, localPort: echo.port })),
    }));
    const config = makeConfigDir(groups);
    const historyFile = join(config.dir, 'traffic-history.json');
    const browser = await launching;
    const out = artifactsFor('dashboard-overview');
    const cleanups: (() => Promise<void> | void)[] = [];
    after(async () => {
      for (const cleanup of cleanups.reverse()) await cleanup();
      await browser.close();
      await echo.close();
    });
    const start = async (): Promise<{ started: StartedServer; api: TestAdmin; ports: Map<string, number> }> => {
      const started = await startServer(config);
      const api = await startAdmin(started.server, config, { token: TOKEN, historyFile, ...(started.fingerprint ? { fingerprint: started.fingerprint } : {}) });
      const ports = new Map<string, number>();
      const active = ['alpha', 'beta'].map((name) =>
        waitForEvent(started.events, (e) => e.type === 'group-activated' && e.group === name, `${name} active`).then((e) => {
          if (e.type === 'group-activated') for (const app of e.apps) ports.set(`${name}/${app.name}`, app.remotePort);
        }),
      );
      const clients = ['alpha', 'beta'].map((name) => startClient(loadGroupFile(config.groupFile(name)), started, { clientId: `overview-${name}` }).client);
      let stopped = false;
      const stop = async (): Promise<void> => {
        if (stopped) return;
        stopped = true;
        for (const client of clients) client.stop();
        await api.admin.close();
        await started.server.close();
      };
      cleanups.push(stop);
      await Promise.all(active);
      return { started, api, ports, stop } as never;
    };

    const first = (await start()) as Awaited<ReturnType<typeof start>> & { stop: () => Promise<void> };
    const sent = 300 * 1024;
    await echoRoundTrip(first.ports.get('beta/app3')!, Buffer.alloc(sent, 0x61));
    await echoRoundTrip(first.ports.get('alpha/app1')!, Buffer.alloc(1024, 0x62));

    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(`${first.api.url}/#token=${TOKEN}`);
    await page.waitForSelector('#stream-status[data-state="live"]', WAIT);
    await waitInPage(page, 'document.querySelectorAll("#apps tr.app").length === 12', WAIT);
    await waitInPage(page, 'document.querySelector(\'#overview [data-stat="online"]\').textContent === "2"', WAIT);
    assert.equal(await page.textContent('#overview [data-stat="lost"]'), '0');
    assert.match((await page.textContent('#overview [data-stat="today-in"]')) ?? '', /^30\d\.\d KiB$/);
    // No chart until asked for.
    assert.equal(await page.locator('svg[data-chart], svg[data-history]').count(), 0);

    // Sorted by total, largest first: the app that carried the most leads.
    await page.click('#apps th[data-sort="totals"]');
    await waitInPage(page, 'document.querySelector("#apps tbody tr.app").dataset.app === "beta/app3"', WAIT);
    assert.equal(await page.getAttribute('#apps th[data-sort="totals"]', 'data-order'), 'desc');
    await page.click('#apps th[data-sort="group"]');
    await waitInPage(page, 'document.querySelector("#apps tbody tr.app").dataset.app === "alpha/app0"', WAIT);

    const wide = await pageSize(page);
    assert.equal(wide.width, 1280, 'no horizontal overflow at 1280 px');
    assert.ok(wide.height <= MAX_PAGE_HEIGHT, `page height at 1280 px: ${wide.height}`);
    const shot = await imageStats(browser, await page.screenshot({ path: join(out, 'overview-1280.png'), fullPage: true }));
    assert.ok(shot.width === 1280 && shot.colours > 20, JSON.stringify(shot));

    // A row's click: its live chart and its 24 h history from the server.
    await page.click('#apps tr.app[data-app="beta/app3"]');
    await page.waitForSelector(`svg[data-history="beta/app3"][data-total-in="${sent}"]`, WAIT);
    assert.equal(await page.locator('svg[data-chart="beta/app3"]').count(), 1);
    await page.screenshot({ path: join(out, 'overview-1280-charts.png'), fullPage: true });

    await page.setViewportSize({ width: 800, height: 900 });
    await waitInPage(page, 'document.documentElement.scrollWidth <= 800', WAIT);
    const narrow = await pageSize(page);
    assert.equal(narrow.width, 800, 'no horizontal overflow at 800 px');
    assert.ok(narrow.height <= MAX_PAGE_HEIGHT + 1200, `page height at 800 px: ${narrow.height}`);
    const narrowShot = await imageStats(browser, await page.screenshot({ path: join(out, 'overview-800.png'), fullPage: true }));
    assert.ok(narrowShot.width === 800 && narrowShot.colours > 20, JSON.stringify(narrowShot));

    // The host file button: the file its host runs with, server and fingerprint in it.
    const downloading = page.waitForEvent('download', WAIT);
    await page.click('.group[data-group="alpha"] button[data-action="hostfile"]');
    const download = await downloading;
    assert.equal(download.suggestedFilename(), 'alpha.yaml');
    const hostFile = parse(readFileSync((await download.path())!, 'utf8')) as Record<string, unknown>;
    assert.equal(hostFile.name, 'alpha');
    assert.equal(hostFile.serverFingerprint, first.started.fingerprint);
    assert.equal(hostFile.secret, groups[0]!.secret);
    await page.close();

    // A restart: the new server's page shows the traffic of before.
    await first.stop();
    const second = await start();
    const fresh = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    fresh.on('pageerror', (error) => pageErrors.push(error.message));
    await fresh.goto(`${second.api.url}/#token=${TOKEN}`);
    await waitInPage(fresh, 'document.querySelectorAll("#apps tr.app").length === 12', WAIT);
    assert.match((await fresh.textContent('#overview [data-stat="today-in"]')) ?? '', /^30\d\.\d KiB$/);
    await fresh.click('#apps tr.app[data-app="beta/app3"]');
    await fresh.waitForSelector(`svg[data-history="beta/app3"][data-total-in="${sent}"]`, WAIT);
    const ys = ((await fresh.locator('svg[data-history="beta/app3"] polyline.in').getAttribute('points')) ?? '').split(' ').map((point) => point.split(',')[1]);
    assert.ok(new Set(ys).size > 1, 'the history line shows the earlier traffic');
    await fresh.screenshot({ path: join(out, 'after-restart-1280.png'), fullPage: true });
    assert.deepEqual(pageErrors, []);
  },
);
