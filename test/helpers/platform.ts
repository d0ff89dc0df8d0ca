import type { types } from 'mediasoup';
import { loadConfig, type ConfigInput } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logger.js';
import { buildMAuthHeader } from '../../src/core/mauth.js';
import { type Platform, startPlatform } from '../../src/platform.js';

/** The embedded platform's `ops.token`: tests scrape /metrics and drain with `Authorization: Bearer <it>`. */
export const TEST_OPS_TOKEN = 'test-ops-token-0123456789abcdef';
export const opsAuthorization = { authorization: `Bearer ${TEST_OPS_TOKEN}` };

let portBlock = 0;

/** A distinct port block per platform in this process, away from the defaults, so tests never collide. */
function nextPorts(): { webRtcBasePort: number; plainRtpMinPort: number; plainRtpMaxPort: number } {
  const base = 20000 + ((process.pid * 7 + portBlock++ * 211) % 9000);
  return { webRtcBasePort: base, plainRtpMinPort: 30000 + (base % 9000), plainRtpMaxPort: 30000 + (base % 9000) + 199 };
}

export interface EmbeddedPlatform extends Platform {
  nuveUrl: string;
  gatewayUrl: string;
  /** Creates a room through the real Nuve API (as the superService). */
  createRoom(name?: string, options?: Record<string, unknown>): Promise<string>;
  /** A one-time token through the real Nuve API. */
  token(roomId: string, user: string, role?: 'presenter' | 'viewer'): Promise<string>;
  /** A new tenant (service) through the real Nuve API, with a random key. */
  createTenant(name: string): Promise<{ id: string; key: string }>;
}

/** The whole platform in this process, as `npm start` runs it, on free ports with an in-memory SQLite store. */
export async function startEmbedded(overrides: ConfigInput = {}): Promise<EmbeddedPlatform> {
  const config = loadConfig({
    env: {},
    overrides: {
      log: { level: (process.env.TEST_LOG_LEVEL as 'warn') ?? 'warn' },
      store: { sqlitePath: ':memory:' },
      ops: { token: TEST_OPS_TOKEN },
      ...overrides,
      nuve: { port: 0, ...overrides.nuve },
      gateway: {
        port: 0,
        id: `gw-test-${Math.random().toString(36).slice(2, 8)}`,
        // Every test client connects from 127.0.0.1: one address, many users.
        rateLimit: { connectionsPerSecPerIp: 1000 },
        ...overrides.gateway,
      },
      agent: { numWorkers: 1, heartbeatMs: 500, ...nextPorts(), ...overrides.agent },
    },
  });
  const platform = await startPlatform(config, undefined, createLogger(config.log));
  const nuve = platform.nuve!;
  const su = nuve.superServiceRecord;
  const auth = (extra: { username?: string; role?: string } = {}) =>
    buildMAuthHeader({ serviceId: su.id, key: su.key, cnonce: Math.random().toString(36).slice(2), ...extra });
  // The gateway registers asynchronously over the bus; wait until Nuve knows it.
  for (let i = 0; i < 100 && !nuve.registry.get(platform.gateway!.id); i++) await new Promise((r) => setTimeout(r, 20));
  return Object.assign(platform, {
    nuveUrl: nuve.url,
    gatewayUrl: platform.gateway!.url,
    async createRoom(name = 'room', options: Record<string, unknown> = {}) {
      const res = await fetch(`${nuve.url}/rooms`, {
        method: 'POST',
        headers: { authorization: auth(), 'content-type': 'application/json' },
        body: JSON.stringify({ name, options }),
      });
      if (res.status !== 200) throw new Error(`createRoom: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { _id: string })._id;
    },
    async createTenant(name: string) {
      const key = `${name}-key-${Math.random().toString(36).slice(2)}`;
      const res = await fetch(`${nuve.url}/services`, {
        method: 'POST',
        headers: { authorization: auth(), 'content-type': 'application/json' },
        body: JSON.stringify({ name, key }),
      });
      if (res.status !== 200) throw new Error(`createTenant: ${res.status} ${await res.text()}`);
      return { id: (await res.text()).replaceAll('"', ''), key };
    },
    async token(roomId: string, user: string, role: 'presenter' | 'viewer' = 'presenter') {
      const res = await fetch(`${nuve.url}/rooms/${roomId}/tokens`, {
        method: 'POST',
        headers: { authorization: auth({ username: user, role }) },
      });
      if (res.status !== 200) throw new Error(`createToken: ${res.status} ${await res.text()}`);
      return res.text();
    },
  });
}

/**
 * Every router of the agent's workers from now on, as mediasoup reports them: each worker's spare
 * (a started pool has them; the next rooms take them) and every router created later.
 */
export function watchRouters(platform: Platform, onRouter: (router: types.Router, worker: number) => void): () => void {
  const slots = platform.agent!.pool.all();
  const listeners = slots.map((slot) => {
    if (slot.spare) onRouter(slot.spare, slot.index);
    const listener = (router: types.Router) => onRouter(router, slot.index);
    slot.worker.observer.on('newrouter', listener);
    return listener;
  });
  return () => slots.forEach((slot, i) => slot.worker.observer.off('newrouter', listeners[i]!));
}
