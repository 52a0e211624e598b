import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { loadGroupFile } from '../../../src/config/index.js';
import { launchChromium, skipWithoutChromium } from '../../helpers/browser.js';
import { makeConfigDir, randomSecret } from '../../helpers/configs.js';
import { startClient, startServer, type StartedClient, type StartedServer } from '../../helpers/in-process.js';
import { waitForEvent } from '../../helpers/net.js';
import { startWebApp, writeVhostGroup } from '../../helpers/vhost.js';

type WebApp = Awaited<ReturnType<typeof startWebApp>>;

const PIXEL = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');

/** Answers a WebSocket handshake by hand and echoes each text frame back upper-cased. */
function acceptWebSocket(socket: Socket, key: string): void {
  const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  // The http server no longer hears an upgraded socket's errors: a reset at the end is ours to take.
  socket.on('error', () => socket.destroy());
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  let buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
    // Small masked frames only (what the page sends): FIN+opcode, MASK+len<126, mask, payload.
    while (buffer.length >= 6 && buffer.length >= 6 + (buffer[1]! & 0x7f)) {
      const length = buffer[1]! & 0x7f;
      const mask = buffer.subarray(2, 6);
      const payload = Buffer.from(buffer.subarray(6, 6 + length).map((byte, i) => byte ^ mask[i % 4]!));
      const opcode = buffer[0]! & 0x0f;
      buffer = buffer.subarray(6 + length);
      if (opcode === 0x8) return void socket.end(Buffer.from([0x88, 0x00]));
      const reply = Buffer.from(`echo:${payload.toString().toUpperCase()}`);
      socket.write(Buffer.concat([Buffer.from([0x81, reply.length]), reply]));
    }
  });
}

/**
 * Chromium (Debian's) loads a page from one private host through the HTTP vhost: its script
 * and image come from a second private host under another name, and the page opens a
 * WebSocket to a third name, echoed by the app after the 101.
 */
describe('a browser through the HTTP vhost', { skip: skipWithoutChromium }, () => {
  let started: StartedServer;
  const clients: StartedClient[] = [];
  const apps: WebApp[] = [];
  let browser: Browser | undefined;
  let port = 0;

  before(async () => {
    const page = await startWebApp('page', (req, res) => {
      const assets = `http://assets.test:${port}`;
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<!doctype html><title>loading</title><img id="pixel" src="${assets}/pixel.png"><script src="${assets}/app.js"></script>`);
      void req;
      return true;
    });
    const assets = await startWebApp('assets', (req, res) => {
      if (req.url === '/app.js') {
        res.writeHead(200, { 'content-type': 'text/javascript' });
        res.end(`document.title = 'script from ' + document.currentScript.src.split('/')[2].split(':')[0];
          const ws = new WebSocket('ws://ws.test:${port}/chat');
          ws.onopen = () => ws.send('hello through the tunnel');
          ws.onmessage = (event) => { window.wsEcho = event.data; ws.close(); };
          ws.onerror = () => { window.wsEcho = 'error'; };`);
      } else {
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': PIXEL.length });
        res.end(PIXEL);
      }
      return true;
    });
    const ws = await startWebApp('ws');
    ws.server.on('upgrade', (req, socket: Socket) => acceptWebSocket(socket, String(req.headers['sec-websocket-key'])));
    apps.push(page, assets, ws);
    const config = makeConfigDir([], { extra: { vhost: { http: '127.0.0.1:0' } } });
    writeVhostGroup(config, 'front', randomSecret(), [{ name: 'page', type: 'http', localPort: page.port, domains: ['www.test'] }]);
    writeVhostGroup(config, 'back', randomSecret(), [
      { name: 'assets', type: 'http', localPort: assets.port, domains: ['assets.test'] },
      { name: 'chat', type: 'http', localPort: ws.port, domains: ['ws.test'] },
    ]);
    started = await startServer(config);
    port = started.server.vhost!.port('http');
    for (const group of ['front', 'back']) {
      clients.push(startClient(loadGroupFile(config.groupFile(group)), started));
      await waitForEvent(started.events, (event) => event.type === 'group-activated' && event.group === group, `${group} activated`);
    }
  });

  after(async () => {
    await browser?.close();
    for (const { client } of clients) await client.stop();
    await started?.server.close();
    for (const app of apps) await app.close();
  });

  test('the page, its assets from another private host, and a WebSocket echo', { timeout: 60_000 }, async () => {
    browser = await launchChromium(['--host-resolver-rules=MAP *.test 127.0.0.1']);
    const page = await browser.newPage();
    const response = await page.goto(`http://www.test:${port}/`);
    assert.equal(response?.status(), 200);
    await page.waitForFunction('window.wsEcho !== undefined', undefined, { timeout: 20_000 });
    assert.equal(await page.title(), 'script from assets.test');
    assert.equal(await page.evaluate('document.getElementById("pixel").naturalWidth'), 1);
    assert.equal(await page.evaluate('window.wsEcho'), 'echo:HELLO THROUGH THE TUNNEL');
  });
});
