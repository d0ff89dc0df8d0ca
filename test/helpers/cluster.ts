import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect as netConnect, createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Bus } from '../../src/core/bus/bus.js';
import { NatsBus } from '../../src/core/bus/nats-bus.js';
import { RabbitMqBus } from '../../src/core/bus/rabbitmq-bus.js';
import { type AgentDump, agentSubjects } from '../../src/core/agent-protocol.js';
import { createLogger } from '../../src/core/logger.js';
import { type ServiceProcess, freePort, hostPort, serviceUrl, startNats, startRabbitMq, startRedis } from './services.js';
import { buildMAuthHeader } from '../../src/core/mauth.js';

export { freePort, ServiceProcess, startNats, startRedis } from './services.js';

/** A fresh database on the test PostgreSQL (TEST_PG_URL); `drop()` removes it. */
export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const server = serviceUrl('postgres');
  const name = `mss_cluster_${randomBytes(4).toString('hex')}`;
  const url = `${server}/${name}`;
  return {
    url,
    async drop() {
      const client = new pg.Client({ connectionString: `${server}/postgres` });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await client.end();
    },
  };
}

/** One role of the cluster as its own OS process, configured through MSS_* variables like a deployment. */
export class RoleProcess {
  readonly output: string[] = [];
  private proc?: ChildProcess;
  /** Set when the test itself signals the process: any other exit is a crash worth showing. */
  private stopping = false;

  constructor(
    readonly role: 'nuve' | 'gateway' | 'agent' | 'push' | 'distributor' | 'all',
    readonly env: Record<string, string>,
    /** Run inside this network namespace (`ip netns exec`). */
    readonly netns?: string,
  ) {}

  async start(): Promise<void> {
    // BENCH_CPU_PROF_DIR: each role process writes a V8 CPU profile there when it exits (benchmarks' profiles).
    const profile = process.env.BENCH_CPU_PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF_DIR}`] : [];
    const node = [process.execPath, ...profile, '--import', 'tsx', 'src/cli.ts', this.role];
    const [command, ...args] = this.netns ? ['ip', 'netns', 'exec', this.netns, ...node] : node;
    this.stopping = false;
    const proc = spawn(command!, args, {
      env: { ...process.env, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    proc.stdout!.on('data', (d: Buffer) => this.output.push(d.toString()));
    proc.stderr!.on('data', (d: Buffer) => this.output.push(d.toString()));
    // A role dying on its own mid-test otherwise shows only as a later "fetch failed": print why it died.
    proc.once('exit', (code, signal) => {
      if (this.stopping) return;
      const tail = this.output.join('').split('\n').slice(-40).join('\n');
      process.stderr.write(`[${this.role} pid ${proc.pid}] exited unexpectedly (code ${code}, signal ${signal}); its last output:\n${tail}\n`);
    });
    // Generous: a role's first start compiles its TypeScript (tsx), which takes ~30 s on a loaded 2-core machine.
    const until = Date.now() + 90_000;
    while (!this.output.join('').includes('mediasoup-signal started')) {
      if (proc.exitCode !== null) throw new Error(`${this.role} exited: ${this.output.join('')}`);
      if (Date.now() > until) throw new Error(`${this.role} did not start: ${this.output.join('')}`);
      await sleep(50);
    }
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Resolves with the exit code (null when killed by a signal) once the process has exited. */
  exited(): Promise<number | null> {
    const proc = this.proc!;
    if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
    return new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
  }

  signal(signal: NodeJS.Signals): void {
    this.stopping = true;
    this.proc?.kill(signal);
  }

  get running(): boolean {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const proc = this.proc;
    if (!proc || !this.running) return;
    const exited = new Promise((r) => proc.once('exit', r));
    this.stopping = true;
    proc.kill(signal);
    await exited;
  }
}

/**
 * The cluster buses the cluster suites run on, each on a private server of its own: every one
 * by default, or those TEST_CLUSTER_BUSES lists (`nats`, `rabbitmq`) to look at one.
 */
export type ClusterBus = 'nats' | 'rabbitmq';
const ALL_BUSES: ClusterBus[] = ['nats', 'rabbitmq'];
export const CLUSTER_BUSES: ClusterBus[] = (process.env.TEST_CLUSTER_BUSES ?? ALL_BUSES.join(','))
  .split(',')
  .map((name) => name.trim())
  .filter((name): name is ClusterBus => {
    if (ALL_BUSES.includes(name as ClusterBus)) return true;
    throw new Error(`TEST_CLUSTER_BUSES: unknown bus "${name}" (known: ${ALL_BUSES.join(', ')})`);
  });
export const BUS_LABEL: Record<ClusterBus, string> = { nats: 'NATS', rabbitmq: 'RabbitMQ' };

export interface ClusterOptions {
  gateways: number;
  agents: number;
  /** Push role processes (default none). */
  push?: number;
  env?: Record<string, string>;
  /** The bus every process talks over (default NATS). */
  bus?: ClusterBus;
  /** Address NATS listens on (default loopback; the private RabbitMQ listens on loopback only). */
  natsHost?: string;
}

export interface AgentOptions {
  env?: Record<string, string>;
  /** Network namespace to run in, and the address there from which it reaches NATS. */
  netns?: string;
  natsHost?: string;
}

/** NATS or RabbitMQ + Redis (private processes), PostgreSQL (a fresh database), one Nuve, N gateways, M agents. */
export class Cluster {
  /** The bus's server (NATS or RabbitMQ), to stop and start under the cluster. */
  broker!: ServiceProcess;
  private disposeBroker?: () => Promise<void>;
  redis!: ServiceProcess;
  db!: { url: string; drop(): Promise<void> };
  nuve!: RoleProcess;
  nuvePort!: number;
  readonly gateways: { id: string; port: number; proc: RoleProcess }[] = [];
  readonly agents: { id: string; proc: RoleProcess }[] = [];
  readonly push: RoleProcess[] = [];
  /** Nuves beyond the first (`addNuve`), by URL. */
  readonly moreNuves: { url: string; proc: RoleProcess }[] = [];
  bus!: Bus;
  /** Nuve reaches PostgreSQL through this relay, so tests can take the database away. */
  pgRelay!: TcpRelay;
  private common: Record<string, string> = {};
  readonly superService = { id: randomBytes(12).toString('hex'), key: randomBytes(24).toString('base64url') };
  /** Every process's `ops.token`: the bearer secret of /metrics, /metrics/cluster and /drain. */
  readonly opsToken = randomBytes(24).toString('base64url');

  async start(options: ClusterOptions): Promise<void> {
    const busEnv: Record<string, string> = {};
    if (options.bus === 'rabbitmq') {
      const rabbit = await startRabbitMq();
      this.broker = rabbit;
      this.disposeBroker = () => rabbit.dispose();
      Object.assign(busEnv, { MSS_BUS__DRIVER: 'rabbitmq', MSS_BUS__AMQP_URL: rabbit.url });
    } else {
      const nats = await startNats(options.natsHost);
      this.broker = nats;
      this.disposeBroker = () => nats.stop();
      Object.assign(busEnv, { MSS_BUS__DRIVER: 'nats', MSS_BUS__NATS_URL: nats.url });
    }
    this.redis = await startRedis();
    this.db = await createTestDatabase();
    const pgServer = hostPort(this.db.url);
    this.pgRelay = new TcpRelay(pgServer.port, pgServer.host);
    await this.pgRelay.up();
    const common = {
      MSS_LOG__LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
      ...busEnv,
      MSS_REDIS__URL: `redis://127.0.0.1:${this.redis.port}`,
      MSS_STORE__DRIVER: 'postgres',
      MSS_STORE__POSTGRES_URL: relayedUrl(this.db.url, this.pgRelay.port),
      MSS_NUVE__SUPER_SERVICE__ID: this.superService.id,
      MSS_NUVE__SUPER_SERVICE__KEY: this.superService.key,
      MSS_OPS__TOKEN: this.opsToken,
      MSS_NUVE__GATEWAY_TIMEOUT_MS: '3000',
      MSS_AGENT__GATEWAY_TIMEOUT_MS: '3000',
      MSS_GATEWAY__KEEPALIVE_MS: '500',
      // Every test client connects from 127.0.0.1: one address, many users.
      MSS_GATEWAY__RATE_LIMIT__CONNECTIONS_PER_SEC_PER_IP: '1000',
      ...options.env,
    };
    this.common = common;
    this.nuvePort = await freePort();
    this.nuve = new RoleProcess('nuve', { ...common, MSS_NUVE__PORT: String(this.nuvePort) });
    const starting: Promise<unknown>[] = [this.nuve.start()];
    for (let i = 0; i < options.agents; i++) starting.push(this.addAgent());
    for (let i = 0; i < options.gateways; i++) starting.push(this.addGateway());
    for (let i = 0; i < (options.push ?? 0); i++) {
      const push = new RoleProcess('push', common);
      this.push.push(push);
      starting.push(push.start());
    }
    await Promise.all(starting);
    const silent = createLogger({ level: 'silent', pretty: false });
    this.bus = options.bus === 'rabbitmq' ? await RabbitMqBus.connect(busEnv.MSS_BUS__AMQP_URL!, silent) : await NatsBus.connect(busEnv.MSS_BUS__NATS_URL!, silent);
    await this.waitForGateways(options.gateways);
    await this.waitForAgentsAtGateways(options.agents);
  }

  /** Starts one more agent process (own ports) and returns its id. */
  async addAgent(options: AgentOptions = {}): Promise<string> {
    const i = this.agents.length;
    const id = `agent-${i}`;
    const base = 21000 + (((process.pid % 500) * 13 + i * 211) % 8000);
    const env: Record<string, string> = {
      ...this.common,
      MSS_AGENT__ID: id,
      MSS_AGENT__NUM_WORKERS: '1',
      MSS_AGENT__WEB_RTC_BASE_PORT: String(base),
      MSS_AGENT__PLAIN_RTP_MIN_PORT: String(30000 + i * 300),
      MSS_AGENT__PLAIN_RTP_MAX_PORT: String(30000 + i * 300 + 299),
      ...options.env,
    };
    if (options.natsHost) env.MSS_BUS__NATS_URL = `nats://${options.natsHost}:${this.broker.port}`;
    const proc = new RoleProcess('agent', env, options.netns);
    this.agents.push({ id, proc });
    await proc.start();
    return id;
  }

  /** Starts one more Nuve process (same store, bus and Redis) and returns its URL. */
  async addNuve(): Promise<string> {
    const port = await freePort();
    const proc = new RoleProcess('nuve', { ...this.common, MSS_NUVE__PORT: String(port) });
    const entry = { url: `http://127.0.0.1:${port}`, proc };
    this.moreNuves.push(entry);
    await proc.start();
    return entry.url;
  }

  /** Starts one more gateway process and returns its id. */
  async addGateway(): Promise<string> {
    const entry = { id: `gateway-${this.gateways.length}`, port: 0, proc: undefined as unknown as RoleProcess };
    this.gateways.push(entry); // before any await: concurrent calls must not pick the same id
    entry.port = await freePort();
    entry.proc = new RoleProcess('gateway', { ...this.common, MSS_GATEWAY__ID: entry.id, MSS_GATEWAY__PORT: String(entry.port) });
    await entry.proc.start();
    const id = entry.id;
    return id;
  }

  async stop(): Promise<void> {
    await this.bus?.close();
    await Promise.all([this.nuve, ...this.gateways.map((g) => g.proc), ...this.agents.map((a) => a.proc), ...this.push, ...this.moreNuves.map((n) => n.proc)].map((p) => p?.kill('SIGKILL')));
    await this.disposeBroker?.();
    await this.redis?.stop();
    await this.pgRelay?.down();
    await this.db?.drop();
  }

  get nuveUrl(): string {
    return `http://127.0.0.1:${this.nuvePort}`;
  }

  auth(extra: { username?: string; role?: string } = {}): string {
    return buildMAuthHeader({ serviceId: this.superService.id, key: this.superService.key, cnonce: randomBytes(8).toString("hex"), ...extra });
  }

  async createRoom(name: string, eapolicy: 'ROOM-BEST' | 'TTL-BEST' = 'ROOM-BEST'): Promise<string> {
    const res = await fetch(`${this.nuveUrl}/rooms`, {
      method: 'POST',
      headers: { authorization: this.auth(), 'content-type': 'application/json' },
      body: JSON.stringify({ name, options: { eapolicy } }),
    });
    if (res.status !== 200) throw new Error(`createRoom ${res.status} ${await res.text()}`);
    return ((await res.json()) as { _id: string })._id;
  }

  /** A token and what it says about the gateway (decoded, as a client would). */
  async token(roomId: string, user: string, role: 'presenter' | 'viewer' = 'presenter'): Promise<{ token: string; gatewayId: string; gatewayUrl: string }> {
    const res = await fetch(`${this.nuveUrl}/rooms/${roomId}/tokens`, {
      method: 'POST',
      headers: { authorization: this.auth({ username: user, role }) },
    });
    if (res.status !== 200) throw new Error(`createToken ${res.status} ${await res.text()}`);
    const token = await res.text();
    const claims = JSON.parse(Buffer.from(token, 'base64').toString());
    return { token, gatewayId: claims.gatewayId, gatewayUrl: claims.gatewayUrl };
  }

  async agentDump(agentId: string): Promise<AgentDump> {
    return this.bus.request(agentSubjects.rpc(agentId), { method: 'dump', data: {} }, { timeoutMs: 3000 });
  }

  /** A gateway's rooms and peers, as its drain status (ops token) tells them. */
  async gatewayHealth(port: number): Promise<{ rooms: number; peers: number }> {
    const res = await fetch(`http://127.0.0.1:${port}/drain`, { headers: { authorization: `Bearer ${this.opsToken}` } });
    return res.json() as Promise<{ rooms: number; peers: number }>;
  }

  /**
   * Every gateway can place peers on `n` agents: placement tests would otherwise race the agents'
   * first heartbeats (a loaded machine starts an agent after a gateway took its first rooms).
   */
  private async waitForAgentsAtGateways(n: number): Promise<void> {
    const until = Date.now() + 15_000;
    const candidatesAt = async (port: number) => {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${this.opsToken}` } }).catch(() => undefined);
      const text = res?.ok ? await res.text() : '';
      return Number(/^mss_gateway_agents\{[^}]*state="candidate"[^}]*\} (\d+)/m.exec(text)?.[1] ?? 0);
    };
    while (Date.now() < until) {
      const seen = await Promise.all(this.gateways.map((g) => candidatesAt(g.port)));
      if (seen.every((count) => count >= n)) return;
      await sleep(100);
    }
    throw new Error(`gateways did not all see ${n} agents`);
  }

  private async waitForGateways(n: number): Promise<void> {
    const until = Date.now() + 15_000;
    while (Date.now() < until) {
      const res = await fetch(`${this.nuveUrl}/health`).catch(() => undefined);
      if (res?.ok && ((await res.json()) as { gateways: number }).gateways >= n) return;
      await sleep(100);
    }
    throw new Error('gateways did not register at Nuve');
  }
}

/** The same URL with its host and port replaced by the relay's (127.0.0.1:port). */
export function relayedUrl(url: string, port: number): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(port);
  return u.toString();
}

/**
 * A TCP relay between a role and a server, which the test can cut like a
 * failed network or a stopped server would: open connections are reset and
 * new ones refused until `up()`.
 */
export class TcpRelay {
  private server?: import('node:net').Server;
  private readonly sockets = new Set<import('node:net').Socket>();
  port = 0;

  constructor(
    private readonly targetPort: number,
    private readonly targetHost = '127.0.0.1',
  ) {}

  async up(): Promise<void> {
    const server = createServer((client) => {
      const upstream = netConnect(this.targetPort, this.targetHost);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => (client.destroy(), upstream.destroy()));
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', () => resolve()));
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  async down(): Promise<void> {
    for (const s of this.sockets) s.resetAndDestroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = undefined;
  }
}
