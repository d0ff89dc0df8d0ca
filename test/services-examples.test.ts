import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WebSocket } from 'ws';
import { type PushEvent, Session } from '../client/src/sdk/session.js';
import { SignalError } from '../client/src/sdk/errors.js';
import { buildMAuthHeader } from '../src/core/mauth.js';
import { type RunningService, startService } from '../src/services/index.js';
import chat from '../examples/chat.js';
import leaderboard from '../examples/leaderboard.js';
import { waitFor } from './helpers/nuve-harness.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';

// The example services loaded into the embedded platform the way `npm start -- --service` does
// (startService on the platform's in-process bus), called by SDK Sessions through the gateway.

let platform: EmbeddedPlatform;
let tenant: { id: string; key: string };
const running: RunningService[] = [];
const sessions: Session[] = [];

before(async () => {
  (globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;
  platform = await startEmbedded();
  tenant = await platform.createTenant('examples');
  for (const definition of [chat, leaderboard]) {
    running.push(await startService(definition, { bus: platform.bus, config: platform.config, logger: platform.logger, metrics: platform.metrics }));
  }
  await waitFor(() => platform.gateway!.services.discovery.services().join() === 'chat,leaderboard', 5000, 'examples discovered');
});

after(async () => {
  for (const s of sessions) s.close();
  for (const r of running) await r.stop();
  await platform.close();
});

async function connect(user: string): Promise<Session> {
  const session = new Session({
    reconnect: false,
    getToken: async () => {
      const res = await fetch(`${platform.nuveUrl}/sessions`, {
        method: 'POST',
        headers: {
          authorization: buildMAuthHeader({ serviceId: tenant.id, key: tenant.key, cnonce: Math.random().toString(36).slice(2) }),
          'content-type': 'application/json',
        },
        body: JSON.stringify({ user, scopes: ['rpc', 'push'] }),
      });
      return ((await res.json()) as { token: string }).token;
    },
  });
  await session.connect();
  sessions.push(session);
  return session;
}

test('chat: members of a room get each other\'s messages as pushes, in the order said', async () => {
  const ann = await connect('ann');
  const ben = await connect('ben');
  const got: PushEvent[] = [];
  ben.on('push', (m) => got.push(m));
  const room = { strategy: 'hash' as const, key: 'lobby' };
  await ann.call('chat', 'join', { room: 'lobby' }, room);
  assert.deepEqual(await ben.call('chat', 'join', { room: 'lobby' }, room), { members: ['ann', 'ben'] });
  await Promise.all(['one', 'two', 'three'].map((text) => ann.call('chat', 'say', { room: 'lobby', text }, room)));
  await waitFor(() => got.length === 3, 3000, 'three messages');
  assert.deepEqual(
    got.map((m) => m.data),
    ['one', 'two', 'three'].map((text) => ({ room: 'lobby', from: 'ann', text })),
  );
  await assert.rejects(ann.call('chat', 'members', { room: 'lobby' }), (err: SignalError) => err.code === 'SERVICE_ACCESS_DENIED');
});

test('leaderboard: best score per player, top list, reset is internal', async () => {
  const a = await connect('p1');
  const b = await connect('p2');
  await a.call('leaderboard', 'submit', { board: 'weekly', score: 10 });
  await a.call('leaderboard', 'submit', { board: 'weekly', score: 5 });
  await b.call('leaderboard', 'submit', { board: 'weekly', score: 20 });
  assert.deepEqual(await b.call('leaderboard', 'top', { board: 'weekly' }), {
    top: [
      { user: 'p2', score: 20 },
      { user: 'p1', score: 10 },
    ],
  });
  await assert.rejects(a.call('leaderboard', 'submit', { board: 'weekly', score: -1 }), (err: SignalError) => err.code === 'SERVICE_INVALID_ARGS');
  await assert.rejects(a.call('leaderboard', 'reset', { board: 'weekly' }), (err: SignalError) => err.code === 'SERVICE_ACCESS_DENIED');
});
