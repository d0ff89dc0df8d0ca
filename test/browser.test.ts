import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import {
  type Chromium,
  DESKTOP,
  PHONE,
  chromiumMissing,
  inboundStats,
  joinViaLobby,
  launchChromium,
  remoteTile,
  screenshot,
  assertToastsClearOfControls,
  tileVideoWidth,
  waitFor,
  waitForMediaFlow,
} from './helpers/browser.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';
import type { Room } from '../src/gateway/room.js';
import { loadServiceModules } from '../src/service-modules.js';
import type { RunningService } from '../src/services/index.js';

// Real Chromium (Debian's, fake camera and microphone) against the embedded platform, through the playground page.
describe('browser SDK and playground in Chromium', { skip: chromiumMissing, timeout: 90_000 }, () => {
  let platform: EmbeddedPlatform;
  let browser: Chromium;
  let services: RunningService[] = [];
  const pages: Page[] = [];

  before(async () => {
    [platform, browser] = await Promise.all([startEmbedded({ nuve: { port: 0, devEndpoints: true } }), launchChromium()]);
    // What `npm start` loads with the playground on: the example chat service, for the playground's chat.
    services = await loadServiceModules([], platform);
  });
  after(async () => {
    await browser?.close();
    for (const service of services) await service.stop();
    await platform?.close();
  });

  const devRoom = async (name: string): Promise<string> => {
    const res = await fetch(`${platform.nuveUrl}/dev/rooms`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name }),
    });
    assert.equal(res.status, 200);
    return ((await res.json()) as { _id: string })._id;
  };
  const open = async (viewport: { width: number; height: number }) => {
    const page = await browser.newPage(viewport);
    pages.push(page);
    return page;
  };

  test('two people see and hear each other; when one leaves, the other loses the tile within 2 s', async () => {
    const roomId = await devRoom('two-people');
    const alice = await open(DESKTOP);
    const bob = await open(PHONE);
    await joinViaLobby(alice, platform.nuveUrl, { roomId, name: 'alice' });
    await joinViaLobby(bob, platform.nuveUrl, { roomId, name: 'bob' });
    // "bob joined" on alice's desktop window, "alice joined" on bob's phone: neither covers the controls.
    await assertToastsClearOfControls(alice, 'desktop');
    await assertToastsClearOfControls(bob, 'phone');

    // Each shows the other's video playing…
    await waitFor("alice's page plays bob's video", async () => (await tileVideoWidth(alice, remoteTile('bob'))) > 0);
    await waitFor("bob's page plays alice's video", async () => (await tileVideoWidth(bob, remoteTile('alice'))) > 0);
    // …with frames being decoded and audio arriving, continuously.
    const a1 = await waitForMediaFlow(alice, 'alice');
    const b1 = await waitForMediaFlow(bob, 'bob');
    await waitForMediaFlow(alice, 'alice (again)', a1);
    await waitForMediaFlow(bob, 'bob (again)', b1);

    // The cluster panel reads /status: two peers, four producers (mic + camera each), four consumers.
    await waitFor('the cluster panel to show 2 peers and 4 producers', async () => {
      const peers = await alice.textContent('[data-stat=peers] b');
      const producers = await alice.textContent('[data-stat=producers] b');
      return peers === '2' && producers === '4';
    });
    await screenshot(alice, 'browser-two-people-desktop.png');
    await screenshot(bob, 'browser-two-people-phone.png');

    // Alice mutes her microphone: bob's page shows her muted, then unmuted again.
    await alice.click('#btn-mic');
    await bob.locator(`${remoteTile('alice')}.mic-muted`).waitFor({ timeout: 5000 });
    // Alice's button follows her pauseProducer answer, which may arrive after bob's consumerPaused.
    await alice.locator('#btn-mic[data-on=false]').waitFor({ timeout: 5000 });
    await alice.click('#btn-mic');
    await bob.locator(`${remoteTile('alice')}:not(.mic-muted)`).waitFor({ timeout: 5000 });

    // Bob leaves: alice's tile of bob goes within 2 s.
    const left = Date.now();
    await bob.click('#btn-leave');
    await alice.locator(remoteTile('bob')).waitFor({ state: 'detached', timeout: 2000 });
    assert.ok(Date.now() - left < 2000);
    await bob.locator('#lobby').waitFor({ state: 'visible' });
    await alice.click('#btn-leave');
  });

  test('two pages chat through the chat service (session.call, messages as pushes): each sees the other\'s message', async () => {
    const roomId = await devRoom('chat-room');
    const ivy = await open(DESKTOP);
    const jack = await open(PHONE);
    await joinViaLobby(ivy, platform.nuveUrl, { roomId, name: 'ivy', mic: false, cam: false });
    await joinViaLobby(jack, platform.nuveUrl, { roomId, name: 'jack', mic: false, cam: false });
    // Send is enabled once the page's session joined the chat service's room.
    for (const page of [ivy, jack]) await page.locator('#chat-send:enabled').waitFor({ timeout: 10_000 });
    await ivy.fill('#chat-text', 'hello from ivy');
    await ivy.click('#chat-send');
    await jack.locator('#chat-log li[data-from="ivy"]', { hasText: 'hello from ivy' }).waitFor({ timeout: 5000 });
    await jack.fill('#chat-text', 'hi ivy');
    await jack.press('#chat-text', 'Enter');
    await ivy.locator('#chat-log li[data-from="jack"]', { hasText: 'hi ivy' }).waitFor({ timeout: 5000 });
    // Each page shows both messages, its own too (the service pushes to every member), in the order said.
    for (const page of [ivy, jack]) {
      const log = await page.locator('#chat-log li').evaluateAll((items) => items.map((li) => li.textContent));
      assert.deepEqual(log, ['ivyhello from ivy', 'jackhi ivy']);
    }
    await screenshot(jack, 'browser-chat-phone.png');
    await ivy.click('#btn-leave');
    await jack.click('#btn-leave');
  });

  test('a viewer watches, and its publish attempt fails with PRODUCE_NOT_ALLOWED (403) shown in the page', async () => {
    const roomId = await devRoom('viewer-room');
    const carol = await open(DESKTOP);
    const dave = await open(PHONE);
    await joinViaLobby(carol, platform.nuveUrl, { roomId, name: 'carol' });
    await joinViaLobby(dave, platform.nuveUrl, { roomId, name: 'dave', role: 'viewer' });

    await waitFor("the viewer plays carol's video", async () => (await tileVideoWidth(dave, remoteTile('carol'))) > 0);
    await waitForMediaFlow(dave, 'viewer');
    // carol sees the viewer as a participant, with nothing to play.
    await carol.locator(`${remoteTile('dave')} .role`).waitFor();

    await dave.click('#btn-cam');
    const error = dave.locator('.toast.error[data-code=PRODUCE_NOT_ALLOWED]');
    await error.waitFor({ timeout: 10_000 });
    const text = (await error.textContent()) ?? '';
    assert.match(text, /PRODUCE_NOT_ALLOWED \(403\)/);
    assert.match(text, /viewer/);
    // Nothing was published and the viewer is still in the room, watching.
    assert.equal(await dave.evaluate(() => window.playground.client?.localTracks.length), 0);
    assert.equal(await dave.evaluate(() => window.playground.client?.state), 'connected');
    await screenshot(dave, 'browser-viewer-refused-phone.png');
    await dave.click('#btn-leave');
    await carol.click('#btn-leave');
  });

  test('the SDK as an ES module: with autoSubscribe off, tracks are only available until subscribe()', async () => {
    const roomId = await devRoom('selective');
    const gina = await open(DESKTOP);
    await joinViaLobby(gina, platform.nuveUrl, { roomId, name: 'gina' });
    const app = await open(DESKTOP);
    // What the gateway sends the page, by notification method: the SDK has no use for some (downlinkBwe), the wire shows them.
    await app.addInitScript(() => {
      const seenOnWire: Record<string, number> = {};
      Object.assign(window, { seenOnWire });
      const NativeWebSocket = window.WebSocket;
      window.WebSocket = class extends NativeWebSocket {
        constructor(url: string | URL, protocols?: string | string[]) {
          super(url, protocols);
          this.addEventListener('message', (event: MessageEvent) => {
            const message = JSON.parse(String(event.data)) as { notification?: boolean; method?: string };
            if (message.notification && message.method) seenOnWire[message.method] = (seenOnWire[message.method] ?? 0) + 1;
          });
        }
      };
    });
    await app.goto(`${platform.nuveUrl}/`);
    // An app page of its own: imports the SDK bundle and joins with a token from the dev endpoint.
    await app.evaluate(async (room) => {
      const url = '/sdk/mediasoup-signal.mjs';
      const { RoomClient } = (await import(url)) as typeof import('../client/src/sdk/index.js');
      const { token } = (await (
        await fetch('/dev/tokens', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ roomId: room, user: 'hank', role: 'viewer' }) })
      ).json()) as { token: string };
      const client = new RoomClient({ token, autoSubscribe: false });
      const seen = { available: [] as string[], added: [] as string[] };
      client.on('trackAvailable', (t) => seen.available.push(t.kind));
      client.on('trackAdded', (t) => seen.added.push(t.kind));
      Object.assign(window, { manual: { client, seen, token } });
      await client.join();
    }, roomId);
    type Manual = { client: import('../client/src/sdk/index.js').RoomClient; seen: { available: string[]; added: string[] }; token: string };
    const seen = () => app.evaluate(() => (window as unknown as { manual: Manual }).manual.seen);
    await waitFor("gina's microphone and camera to be available", async () => (await seen()).available.length === 2);
    assert.deepEqual((await seen()).added, []);

    await app.evaluate(async () => {
      const { client } = (window as unknown as { manual: Manual }).manual;
      await client.subscribe(client.peers[0]!.id);
    });
    assert.deepEqual((await seen()).added.sort(), ['audio', 'video']);
    const received = () =>
      app.evaluate(async () => {
        const { recv } = await (window as unknown as { manual: Manual }).manual.client.getStats();
        let frames = 0;
        let audio = 0;
        recv?.forEach((s: { type: string; kind?: string; framesDecoded?: number; packetsReceived?: number }) => {
          if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded ?? 0;
          if (s.type === 'inbound-rtp' && s.kind === 'audio') audio += s.packetsReceived ?? 0;
        });
        return { frames, audio };
      });
    await waitFor('subscribed media to flow', async () => {
      const r = await received();
      return r.frames > 5 && r.audio > 5;
    });
    // The consuming transport's bandwidth estimate reaches the client, as mediasoup-demo's server sends it.
    await waitFor('a downlinkBwe notification', () => app.evaluate(() => ((window as unknown as { seenOnWire: Record<string, number> }).seenOnWire.downlinkBwe ?? 0) > 0));
    // Tokens work once: reusing hank's fails with the gateway's stable code.
    const reuse = await app.evaluate(async () => {
      const { client, token } = (window as unknown as { manual: Manual }).manual;
      const again = new (client.constructor as typeof import('../client/src/sdk/index.js').RoomClient)({ token });
      return again.join().then(
        () => 'joined',
        (err: { code?: string }) => err.code,
      );
    });
    assert.equal(reuse, 'TOKEN_ALREADY_USED');
    await app.evaluate(() => (window as unknown as { manual: Manual }).manual.client.leave());
    await gina.click('#btn-leave');
  });

  test('after the media agent is lost, or the network, pages rejoin with fresh tokens and their publications come back', async () => {
    const roomId = await devRoom('agent-lost');
    const erin = await open(DESKTOP);
    const frank = await open(DESKTOP);
    await joinViaLobby(erin, platform.nuveUrl, { roomId, name: 'erin' });
    await joinViaLobby(frank, platform.nuveUrl, { roomId, name: 'frank' });
    await waitFor("erin's page plays frank's video", async () => (await tileVideoWidth(erin, remoteTile('frank'))) > 0);
    await waitForMediaFlow(frank, 'frank');
    const before = await Promise.all([erin, frank].map((p) => p.evaluate(() => window.playground.client!.localTracks.map((t) => t.producerId))));

    // What the gateway does when an agent or worker dies: `mediaAgentLost` and `closing` MEDIA_AGENT_LOST (rejoin) to every peer, close 1012, room gone.
    const gateway = platform.gateway! as unknown as { rooms: Map<string, Room> };
    gateway.rooms.get(roomId)!.agentLost(platform.agent!.id, 'worker-died', true);

    // Rejoined: connected again, microphone and camera republished as new producers.
    for (const [i, page] of [erin, frank].entries()) {
      await waitFor(
        'the page to rejoin and republish',
        async () => {
          const now = await page.evaluate(() => ({
            state: window.playground.client?.state,
            ids: window.playground.client?.localTracks.map((t) => t.producerId) ?? [],
          }));
          return now.state === 'connected' && now.ids.length === 2 && now.ids.every((id, k) => id && id !== before[i]![k]);
        },
        15_000,
      );
    }
    const e0 = await inboundStats(erin);
    await waitFor("erin's page plays frank's video again", async () => (await tileVideoWidth(erin, remoteTile('frank'))) > 0);
    await waitFor("frank's page plays erin's video again", async () => (await tileVideoWidth(frank, remoteTile('erin'))) > 0);
    await waitForMediaFlow(erin, 'erin after rejoin', e0);
    await waitForMediaFlow(frank, 'frank after rejoin');

    // A network loss (the socket dies without a close handshake: 1006) makes erin rejoin the same way.
    const erinIds = await erin.evaluate(() => window.playground.client!.localTracks.map((t) => t.producerId));
    type GatewayPeer = { userName: string; connection?: { ws: { terminate(): void } } };
    const room = gateway.rooms.get(roomId) as { peers: Map<string, GatewayPeer> };
    [...room.peers.values()].find((p) => p.userName === 'erin')!.connection!.ws.terminate();
    await waitFor('erin to rejoin after the network loss', async () => {
      const ids = await erin.evaluate(() => (window.playground.client?.state === 'connected' ? window.playground.client.localTracks.map((t) => t.producerId) : []));
      return ids.length === 2 && ids.every((id, k) => id && id !== erinIds[k]);
    });
    await waitForMediaFlow(frank, 'frank after erin rejoined');
    await erin.click('#btn-leave');
    await frank.click('#btn-leave');
  });
});
