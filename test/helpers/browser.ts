import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type BrowserContext, type Page, chromium } from 'playwright-core';

/** Debian's Chromium (`apt-get install chromium`; scripts/install.sh --test installs it). */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const chromiumMissing = existsSync(CHROMIUM_PATH) ? false : `${CHROMIUM_PATH} not found (bash scripts/install.sh --test)`;
export const ARTIFACTS_DIR = new URL('../../test-artifacts/', import.meta.url).pathname;

export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 800 };

export interface Chromium {
  context: BrowserContext;
  newPage(viewport: { width: number; height: number }): Promise<Page>;
  close(): Promise<void>;
}

/**
 * Headless Chromium with fake camera/microphone (a test pattern and a beep)
 * that grants media permissions by itself, in a fresh profile directory.
 */
export async function launchChromium(): Promise<Chromium> {
  const userDataDir = await mkdtemp(join(tmpdir(), 'mss-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    viewport: DESKTOP,
    args: [
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      // Two pages play media at once: neither may be throttled as a background tab.
      '--disable-renderer-backgrounding',
      '--disable-background-timer-throttling',
      '--disable-backgrounding-occluded-windows',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  let first: Page | undefined = context.pages()[0];
  return {
    context,
    async newPage(viewport) {
      const page = first ?? (await context.newPage());
      first = undefined;
      await page.setViewportSize(viewport);
      page.on('pageerror', (err) => console.error(`[page ${page.url()}] ${err.message}`));
      return page;
    },
    async close() {
      await context.close().catch(() => undefined);
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Polls `check` until it returns a truthy value (returned) or the time is up (throws `what`). */
export async function waitFor<T>(what: string, check: () => Promise<T> | T, timeoutMs = 15_000, everyMs = 100): Promise<NonNullable<T>> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await sleep(everyMs);
  }
}

/** Joins through the playground's lobby form, as a person would. */
export async function joinViaLobby(
  page: Page,
  baseUrl: string,
  opts: { roomId: string; name: string; role?: 'presenter' | 'viewer'; mic?: boolean; cam?: boolean },
): Promise<void> {
  await page.goto(`${baseUrl}/?room=${opts.roomId}`);
  await page.locator(`#room-select option[value="${opts.roomId}"]`).waitFor({ state: 'attached' });
  await page.selectOption('#room-select', opts.roomId);
  await page.fill('#name', opts.name);
  if (opts.role === 'viewer') await page.click('.segmented span:text-is("Viewer")');
  if ((opts.role ?? 'presenter') === 'presenter') {
    await page.setChecked('#with-mic', opts.mic ?? true);
    await page.setChecked('#with-cam', opts.cam ?? true);
  }
  await page.click('#join');
  await page.locator('#room').waitFor({ state: 'visible', timeout: 15_000 });
}

/** The remote tile of the peer shown as `name`. */
export const remoteTile = (name: string) => `.tile.remote[data-peer-name="${name}"]`;

/** videoWidth of the video in a tile (0: nothing decoded yet). */
export function tileVideoWidth(page: Page, tileSelector: string): Promise<number> {
  return page.$eval(`${tileSelector} video`, (v) => (v as HTMLVideoElement).videoWidth).catch(() => 0);
}

export interface InboundStats {
  /** inbound-rtp id → counters (one entry per received stream). */
  audio: Record<string, { packets: number; bytes: number }>;
  video: Record<string, { packets: number; framesDecoded: number }>;
}

/** The page's inbound-rtp statistics (the SDK's receiving transport), per stream. */
export function inboundStats(page: Page): Promise<InboundStats> {
  return page.evaluate(async () => {
    const stats: InboundStats = { audio: {}, video: {} };
    const client = window.playground.client;
    if (!client) return stats;
    const { recv } = await client.getStats();
    recv?.forEach((s: { id: string; type: string; kind?: string; packetsReceived?: number; bytesReceived?: number; framesDecoded?: number }) => {
      if (s.type !== 'inbound-rtp') return;
      if (s.kind === 'audio') stats.audio[s.id] = { packets: s.packetsReceived ?? 0, bytes: s.bytesReceived ?? 0 };
      else if (s.kind === 'video') stats.video[s.id] = { packets: s.packetsReceived ?? 0, framesDecoded: s.framesDecoded ?? 0 };
    });
    return stats;
  });
}

/**
 * Waits until, on some received stream of each kind, more video frames were
 * decoded and more audio packets received than in `since` (a stream that is
 * new since then counts from zero).
 */
export async function waitForMediaFlow(page: Page, label: string, since?: InboundStats): Promise<InboundStats> {
  const base = since ?? (await inboundStats(page));
  return waitFor(`${label}: video frames decoded and audio packets received to increase`, async () => {
    const now = await inboundStats(page);
    const video = Object.entries(now.video).some(([id, v]) => v.framesDecoded > (base.video[id]?.framesDecoded ?? 0) + 5);
    const audio = Object.entries(now.audio).some(([id, a]) => a.packets > (base.audio[id]?.packets ?? 0) + 5);
    return video && audio ? now : undefined;
  });
}

export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(ARTIFACTS_DIR, { recursive: true });
  const path = join(ARTIFACTS_DIR, name);
  await page.screenshot({ path, animations: 'disabled' });
  return path;
}

/**
 * Waits for a toast to show, then fails if any visible toast overlaps anything
 * a person presses (call controls, buttons, links, inputs): a notice must never
 * sit on top of them.
 */
export async function assertToastsClearOfControls(page: Page, label: string): Promise<void> {
  await page.locator('.toast').first().waitFor({ state: 'visible', timeout: 5000 });
  const overlaps = await page.evaluate(() => {
    // No named functions in here: the test's transpiler would wrap them in a helper the page lacks.
    const pressable = [...document.querySelectorAll('.controls, button, a, input, select, textarea, summary')]
      .map((el) => ({ name: el.id || el.className || el.tagName, box: el.getBoundingClientRect() }))
      .filter(({ box }) => box.width > 0 && box.height > 0);
    const overlaps: string[] = [];
    for (const toast of document.querySelectorAll('.toast')) {
      const t = toast.getBoundingClientRect();
      for (const { name, box } of pressable) {
        if (t.left < box.right && box.left < t.right && t.top < box.bottom && box.top < t.bottom) {
          overlaps.push(`"${toast.textContent}" (${Math.round(t.top)}–${Math.round(t.bottom)} px) over ${name} (${Math.round(box.top)}–${Math.round(box.bottom)} px)`);
        }
      }
    }
    return overlaps;
  });
  if (overlaps.length > 0) throw new Error(`${label}: toasts cover what people press: ${overlaps.join('; ')}`);
}
