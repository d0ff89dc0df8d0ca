import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { buildMAuthHeader } from '../src/core/mauth.js';
import { type Chromium, chromiumMissing, launchChromium, waitFor } from './helpers/browser.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';

// The browser SDK surfaces what the app's server does through Nuve's room API as RoomClient events.
describe('room API changes as SDK events in Chromium', { skip: chromiumMissing, timeout: 90_000 }, () => {
  let platform: EmbeddedPlatform;
  let browser: Chromium;
  let page: Page;

  before(async () => {
    [platform, browser] = await Promise.all([startEmbedded({ nuve: { port: 0, devEndpoints: true, allowRemoteUnmute: true } }), launchChromium()]);
    page = await browser.newPage({ width: 800, height: 600 });
  });
  after(async () => {
    await browser?.close();
    await platform?.close();
  });

  /** A MAuth call that must succeed; its JSON answer (Licode's plain-text ones as text). */
  const api = async (method: string, path: string, body?: unknown): Promise<any> => {
    const su = platform.nuve!.superServiceRecord;
    const res = await fetch(`${platform.nuveUrl}${path}`, {
      method,
      headers: {
        authorization: buildMAuthHeader({ serviceId: su.id, key: su.key, cnonce: Math.random().toString(36).slice(2) }),
        ...(body !== undefined && { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    return res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text;
  };

  test('participantUpdated, data, roomMetadataChanged, and a server mute and unmute of its own microphone', async () => {
    const roomId = await platform.createRoom('sdk-events');
    await page.goto(`${platform.nuveUrl}/`);
    const producerId = await page.evaluate(async (room) => {
      const url = '/sdk/mediasoup-signal.mjs';
      const { RoomClient } = (await import(url)) as typeof import('../client/src/sdk/index.js');
      const { token } = (await (
        await fetch('/dev/tokens', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ roomId: room, user: 'ivy', role: 'presenter' }) })
      ).json()) as { token: string };
      const client = new RoomClient({ token });
      const seen: unknown[] = [];
      client.on('participantUpdated', (u) => seen.push(['participantUpdated', u.displayName, u.metadata]));
      client.on('data', (d) => seen.push(['data', d.topic, d.payload]));
      client.on('roomMetadataChanged', (m) => seen.push(['roomMetadataChanged', m]));
      client.on('localTrackMuted', (t) => seen.push(['localTrackMuted', t.source, t.muted]));
      client.on('localTrackUnmuted', (t) => seen.push(['localTrackUnmuted', t.source, t.muted]));
      Object.assign(window, { sdk: { client, seen } });
      await client.join();
      return (await client.publishMicrophone()).producerId;
    }, roomId);
    const seen = () => page.evaluate(() => (window as unknown as { sdk: { seen: unknown[] } }).sdk.seen);
    const [me] = await api('GET', `/rooms/${roomId}/participants`);
    assert.equal(me.tracks[0].id, producerId);

    await api('PATCH', `/rooms/${roomId}/participants/${me.id}`, { name: 'Ivy', metadata: { seat: 1 } });
    await api('POST', `/rooms/${roomId}/data`, { topic: 'chat', payload: { text: 'hello' } });
    await api('PATCH', `/rooms/${roomId}`, { options: { data: { stage: 'live' } } });
    await api('POST', `/rooms/${roomId}/participants/${me.id}/tracks/${producerId}/mute`, { muted: true });
    await waitFor('the server mute to reach the SDK', async () => (await seen()).length >= 4);
    await api('POST', `/rooms/${roomId}/participants/${me.id}/tracks/${producerId}/mute`, { muted: false });
    await waitFor('the server unmute to reach the SDK', async () => (await seen()).length >= 5);
    assert.deepEqual(await seen(), [
      ['participantUpdated', 'Ivy', { seat: 1 }],
      ['data', 'chat', { text: 'hello' }],
      ['roomMetadataChanged', { stage: 'live' }],
      ['localTrackMuted', 'microphone', true],
      ['localTrackUnmuted', 'microphone', false],
    ]);
    assert.equal(await page.evaluate(() => (window as unknown as { sdk: { client: { isMuted(s: string): boolean } } }).sdk.client.isMuted('microphone')), false);
    await page.evaluate(() => (window as unknown as { sdk: { client: { leave(): Promise<void> } } }).sdk.client.leave());
  });
});
