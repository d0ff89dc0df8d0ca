import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Bus, Subscription } from '../../src/core/bus/bus.js';
import { MemoryBus } from '../../src/core/bus/memory-bus.js';
import { type Config, type ConfigInput, loadConfig } from '../../src/core/config.js';
import { type Logger, createLogger } from '../../src/core/logger.js';
import { createMetricsRegistry } from '../../src/core/metrics.js';
import type { DatabaseOptions } from '../../src/core/database.js';
import { type Store, openStore } from '../../src/nuve/store/store.js';
import { type GatewayRpc, type TokenGrant, subjects } from '../../src/core/subjects.js';
import { GatewayPresence } from '../../src/gateway/presence.js';
import { buildMAuthHeader } from '../../src/core/mauth.js';
import { Nuve } from '../../src/nuve/nuve.js';
import { serviceUrl } from './services.js';

/**
 * Server part of the test PostgreSQL's URL (TEST_PG_URL, set by `npm test` / test/run.ts); a
 * database name is appended per test run. Throws, naming what is missing, when it is not set.
 */
export function pgServerUrl(): string {
  return serviceUrl('postgres');
}

export function testLogger(): Logger {
  return createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', pretty: false });
}

export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await sleep(10);
  }
}

/** A database name no other run uses (openStore creates it; dropPgDatabase removes it). */
export function uniquePgDatabase(prefix = 'mss_test'): string {
  return `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`;
}

export async function dropPgDatabase(name: string): Promise<void> {
  if (!/^[A-Za-z0-9_]+$/.test(name)) throw new Error(`bad database name ${name}`);
  const client = new pg.Client({ connectionString: `${pgServerUrl()}/postgres` });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  } finally {
    await client.end();
  }
}

export type StoreKind = 'sqlite' | 'sqlite-file' | 'postgres';

/** Store options for one engine, plus the cleanup that removes what they created. */
export function testStoreOptions(kind: StoreKind): { options: DatabaseOptions; cleanup: () => Promise<void> } {
  const base = { poolSize: 10, sqlitePath: ':memory:', postgresUrl: 'postgres://unused@127.0.0.1/unused' };
  if (kind === 'sqlite') return { options: { ...base, driver: 'sqlite' }, cleanup: async () => undefined };
  if (kind === 'sqlite-file') {
    const dir = mkdtempSync(join(tmpdir(), 'mss-store-'));
    return {
      options: { ...base, driver: 'sqlite', sqlitePath: join(dir, 'nuve.db') },
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const name = uniquePgDatabase();
  return {
    options: { ...base, driver: 'postgres', postgresUrl: `${pgServerUrl()}/${name}` },
    cleanup: () => dropPgDatabase(name),
  };
}

/**
 * The bus as one gateway sees it: after `cut()` its publications are lost,
 * as if the gateway were partitioned away (no goodbye, just silence).
 * Everything else goes straight to the shared bus.
 */
function linkBus(inner: Bus): { bus: Bus; cut(): void } {
  let up = true;
  const bus = new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'publish') {
        return (subject: string, payload: unknown) => {
          if (up) target.publish(subject, payload);
        };
      }
      if (prop === 'close') return async () => undefined; // the shared bus is closed by the harness
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return {
    bus,
    cut: () => {
      up = false;
    },
  };
}

export interface HarnessGateway {
  id: string;
  url: string;
  presence: GatewayPresence;
  /** GatewayPresence.setState, then waits until Nuve has seen the new state. */
  setState(state: 'available' | 'draining'): Promise<void>;
  /** Stops its keepalives silently (no `gateway.down`): Nuve must notice on its own. */
  cut(): void;
  /** Answers `gateway.<id>.rpc` as a gateway does; returns the subscription. */
  respond(handler: (rpc: GatewayRpc) => unknown): Subscription;
  /** Clean shutdown: `gateway.down`. */
  stop(): void;
}

export interface CallOptions {
  /** Service id; the superService when omitted. */
  service?: string;
  /** Key to sign with; defaults to the key of `service` when the harness knows it. */
  key?: string;
  username?: string;
  role?: string;
  /** JSON body (serialised; sets content-type application/json). */
  body?: unknown;
  /** Sent as-is, with `contentType` (default application/json). */
  rawBody?: string;
  contentType?: string;
  timestamp?: number;
  cnonce?: string;
  /** A ready Authorization header, or false for none. */
  authorization?: string | false;
}

export interface CallResult {
  status: number;
  /** Milliseconds from sending the request to the end of the answer. */
  ms: number;
  text: string;
  /** Parsed body when it is JSON, else undefined. */
  json: any;
  headers: Headers;
}

export interface TestService {
  id: string;
  key: string;
  name: string;
}

export interface NuveHarness {
  url: string;
  nuve: Nuve;
  bus: MemoryBus;
  store: Store;
  config: Config;
  superService: TestService;
  gateways: HarnessGateway[];
  call(method: string, path: string, options?: CallOptions): Promise<CallResult>;
  /** Creates a tenant through POST /services (as the superService). */
  createService(name?: string): Promise<TestService>;
  /** Creates a room through the API; returns its id. */
  createRoom(service?: TestService, name?: string, options?: Record<string, unknown>): Promise<string>;
  /** A token through the API (must succeed). */
  createToken(roomId: string, service?: TestService, user?: string, role?: string): Promise<string>;
  /** What a gateway does with a token: `nuve.token.consume` over the bus. */
  consume(token: string, gatewayId: string): Promise<TokenGrant>;
  addGateway(id?: string, weight?: number): Promise<HarnessGateway>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  store?: StoreKind;
  nuve?: NonNullable<ConfigInput['nuve']>;
  /** Gateway ids registered before the harness is returned (default: one, `gw-1`). */
  gateways?: { id: string; weight?: number }[];
  keepaliveMs?: number;
  /** Serve /metrics and /metrics/cluster (a registry of its own, as a Nuve process has). */
  metrics?: boolean;
  /** The operational endpoints' bearer secret (`ops.token`); unset: they are closed. */
  opsToken?: string;
}

/** Starts a real Nuve (MemoryBus, chosen store engine) on an ephemeral port with gateways registered through GatewayPresence. */
export async function startNuve(options: HarnessOptions = {}): Promise<NuveHarness> {
  const { options: storeOptions, cleanup } = testStoreOptions(options.store ?? 'sqlite');
  const config = loadConfig({
    env: {},
    overrides: {
      log: { level: (process.env.TEST_LOG_LEVEL as 'silent' | undefined) ?? 'silent' },
      store: storeOptions,
      // Rate limits would throttle the bursts these tests fire from one address; they have their own tests.
      nuve: { host: '127.0.0.1', port: 0, rateLimit: { enabled: false }, ...options.nuve },
      ops: { token: options.opsToken },
    },
  });
  const logger = testLogger();
  const bus = new MemoryBus(logger, config.bus.requestTimeoutMs);
  const store = await openStore(config.store);
  const metrics = options.metrics ? createMetricsRegistry('nuve') : undefined;
  const nuve = new Nuve({ config, bus, store, logger, metrics });
  try {
    await nuve.start();
  } catch (err) {
    await store.close();
    await cleanup();
    throw err;
  }
  const url = nuve.url;
  const su = nuve.superServiceRecord;
  const superService: TestService = { id: su.id, key: su.key, name: su.name };
  const keys = new Map<string, string>([[su.id, su.key]]);
  const gateways: HarnessGateway[] = [];
  const keepaliveMs = options.keepaliveMs ?? 1000;

  const call = async (method: string, path: string, o: CallOptions = {}): Promise<CallResult> => {
    const serviceId = o.service ?? superService.id;
    const headers: Record<string, string> = {};
    if (o.authorization !== false) {
      headers.authorization =
        o.authorization ??
        buildMAuthHeader({
          serviceId,
          key: o.key ?? keys.get(serviceId) ?? superService.key,
          username: o.username,
          role: o.role,
          timestamp: o.timestamp,
          cnonce: o.cnonce ?? randomBytes(12).toString('hex'),
        });
    }
    let body: string | undefined;
    if (o.rawBody !== undefined) {
      body = o.rawBody;
      headers['content-type'] = o.contentType ?? 'application/json';
    } else if (o.body !== undefined) {
      body = JSON.stringify(o.body);
      headers['content-type'] = o.contentType ?? 'application/json';
    }
    return rawHttp(url, method, path, headers, body);
  };

  const addGateway = async (id = `gw-${gateways.length + 1}`, weight = 1): Promise<HarnessGateway> => {
    const link = linkBus(bus);
    const gwUrl = `ws://127.0.0.1:${9100 + gateways.length}/`;
    const presence = new GatewayPresence(link.bus, logger, { id, url: gwUrl, weight }, keepaliveMs, () => ({ rooms: 0, peers: 0 }));
    const gateway: HarnessGateway = {
      id,
      url: gwUrl,
      presence,
      async setState(state) {
        presence.setState(state);
        await waitFor(() => nuve.registry.get(id)?.state === state, 2000, `gateway ${id} ${state}`);
      },
      cut() {
        link.cut();
      },
      respond(handler) {
        return bus.respond(subjects.gatewayRpc(id), (payload) => handler(payload as GatewayRpc));
      },
      stop() {
        presence.stop();
      },
    };
    presence.start();
    gateways.push(gateway);
    await waitFor(() => nuve.registry.get(id) !== undefined, 2000, `gateway ${id} registered`);
    return gateway;
  };

  const harness: NuveHarness = {
    url,
    nuve,
    bus,
    store,
    config,
    superService,
    gateways,
    call,
    async createService(name = `tenant-${randomBytes(3).toString('hex')}`) {
      const key = randomBytes(18).toString('base64url');
      const res = await call('POST', '/services', { body: { name, key } });
      if (res.status !== 200) throw new Error(`createService: ${res.status} ${res.text}`);
      const id = JSON.parse(res.text) as string;
      keys.set(id, key);
      return { id, key, name };
    },
    async createRoom(service = superService, name = 'room', roomOptions) {
      const res = await call('POST', '/rooms', {
        service: service.id,
        key: service.key,
        body: roomOptions ? { name, options: roomOptions } : { name },
      });
      if (res.status !== 200) throw new Error(`createRoom: ${res.status} ${res.text}`);
      return (res.json as { _id: string })._id;
    },
    async createToken(roomId, service = superService, user = 'alice', role = 'presenter') {
      const res = await call('POST', `/rooms/${roomId}/tokens`, { service: service.id, key: service.key, username: user, role });
      if (res.status !== 200) throw new Error(`createToken: ${res.status} ${res.text}`);
      return res.text;
    },
    consume(token, gatewayId) {
      return bus.request<TokenGrant>(subjects.tokenConsume, { token, gatewayId });
    },
    addGateway,
    async close() {
      for (const gw of gateways) gw.presence.stop();
      await nuve.close();
      await store.close();
      await bus.close();
      await cleanup();
    },
  };

  for (const gw of options.gateways ?? [{ id: 'gw-1' }]) await addGateway(gw.id, gw.weight);
  return harness;
}

const keepAlive = new Agent({ keepAlive: true, maxSockets: 64 });

/**
 * One HTTP request with `path` sent exactly as given: no normalisation of dot
 * segments, slashes or percent-encoding (fetch would), so tests can send what
 * an attacker would.
 */
export function rawHttp(
  baseUrl: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
  timeoutMs = 10_000,
): Promise<CallResult> {
  const { hostname, port } = new URL(baseUrl);
  // Node frames a GET or DELETE body only when told its length.
  if (body !== undefined) headers = { ...headers, 'content-length': String(Buffer.byteLength(body)) };
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, method, path, headers, agent: keepAlive, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        const responseHeaders = new Headers();
        for (const [name, value] of Object.entries(res.headers)) {
          if (value !== undefined) responseHeaders.set(name, Array.isArray(value) ? value.join(', ') : value);
        }
        resolve({ status: res.statusCode ?? 0, ms: performance.now() - started, text, json, headers: responseHeaders });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Decodes a token's base64 JSON (the fields a Licode client reads, plus ours). */
export function decodeTokenText(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as Record<string, unknown>;
}

export function encodeTokenText(fields: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(fields)).toString('base64');
}
