import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { ARTIFACTS_DIR } from './artifacts.js';
import { eventually } from './eventually.js';

/** Debian's chromium package, never a downloaded browser. */
export const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** A test's own folder for files people look at (screenshots), under the suite's artifacts. */
export function artifactsFor(test: string): string {
  const dir = join(ARTIFACTS_DIR, test);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** `skip` option for browser tests: false, or why they cannot run here. */
export const skipWithoutChromium: false | string = existsSync(CHROMIUM)
  ? false
  : `${CHROMIUM} is absent: install Debian's chromium package to run the browser tests`;

/** `extra` flags go after ours (e.g. `--host-resolver-rules` to map test names to loopback). */
export async function launchChromium(extra: string[] = []): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...extra], headless: true });
}

export interface ImageStats {
  width: number;
  height: number;
  /** Distinct colours among the pixels (a blank image has one). */
  colours: number;
}

/** Decodes a PNG in the browser itself (a blank page, nothing loaded) and measures it. */
export async function imageStats(browser: Browser, png: Buffer): Promise<ImageStats> {
  const page = await browser.newPage();
  try {
    return await page.evaluate(async (base64) => {
      // Runs in the page: DOM globals reached through globalThis, this file has no DOM types.
      type Canvas = {
        getContext(kind: '2d'): {
          drawImage(image: unknown, x: number, y: number): void;
          getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
        };
      };
      const g = globalThis as unknown as {
        createImageBitmap(blob: unknown): Promise<{ width: number; height: number }>;
        Blob: new (parts: unknown[], options: { type: string }) => unknown;
        OffscreenCanvas: new (w: number, h: number) => Canvas;
        atob(text: string): string;
      };
      const bytes = Uint8Array.from(g.atob(base64), (c) => c.charCodeAt(0));
      const bitmap = await g.createImageBitmap(new g.Blob([bytes], { type: 'image/png' }));
      const canvas = new g.OffscreenCanvas(bitmap.width, bitmap.height);
      const context = canvas.getContext('2d');
      context.drawImage(bitmap, 0, 0);
      const { data } = context.getImageData(0, 0, bitmap.width, bitmap.height);
      const colours = new Set<number>();
      for (let i = 0; i < data.length; i += 4) colours.add((data[i]! << 16) | (data[i + 1]! << 8) | data[i + 2]!);
      return { width: bitmap.width, height: bitmap.height, colours: colours.size };
    }, png.toString('base64'));
  } finally {
    await page.close();
  }
}

/**
 * Waits until `expression` is true in the page. Polled from here with `page.evaluate`, not with
 * `waitForFunction`: that one re-runs a string predicate with the page's own eval, which the
 * dashboard's Content-Security-Policy (no 'unsafe-eval') refuses whenever the first try is false.
 */
export async function waitInPage(page: Page, expression: string, { timeout = 10_000 } = {}): Promise<void> {
  await eventually(async () => (await page.evaluate(expression)) === true, { timeout, interval: 50, message: `the page to show ${expression}` });
}
