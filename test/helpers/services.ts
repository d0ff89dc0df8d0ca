/**
 * The servers tests talk to (PostgreSQL, NATS, Redis, etcd, RabbitMQ): where they are, and
 * how to start private ones.
 *
 * `npm test` (test/run.ts) starts a private instance of each on a free port before any test
 * file runs and passes its URL in TEST_PG_URL, TEST_NATS_URL, TEST_REDIS_URL, TEST_RABBITMQ_URL
 * (TEST_ETCD_URL when asked for). Tests get those URLs from `serviceUrl()` (never a fixed
 * port); a test file run on its own without them fails fast with a message that says how to
 * get them. Tests that need a server of their own (to restart or stop it) start one with
 * `ServiceProcess` / `startNats` / `startRedis` / `startRabbitMq`: a missing binary is named, never a hang.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, chownSync, constants, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { connect as netConnect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export type ServiceName = 'postgres' | 'nats' | 'redis' | 'etcd' | 'rabbitmq';

/** Environment variable that carries each service's URL to the tests. */
export const SERVICE_ENV: Record<ServiceName, string> = {
  postgres: 'TEST_PG_URL',
  nats: 'TEST_NATS_URL',
  redis: 'TEST_REDIS_URL',
  etcd: 'TEST_ETCD_URL',
  rabbitmq: 'TEST_RABBITMQ_URL',
};

const LABEL: Record<ServiceName, string> = {
  postgres: 'PostgreSQL',
  nats: 'NATS',
  redis: 'Redis',
  etcd: 'etcd',
  rabbitmq: 'RabbitMQ',
};

/** Debian package of each binary, for the messages that say what to install. */
const PACKAGE: Record<string, string> = {
  postgres: 'postgresql',
  initdb: 'postgresql',
  'nats-server': 'nats-server',
  'redis-server': 'redis-server',
  etcd: 'etcd-server',
  'rabbitmq-server': 'rabbitmq-server',
};

/** A dependency the tests need is not there; the message names it and what to do. */
export class MissingDependencyError extends Error {
  override name = 'MissingDependencyError';
}

const HOW_TO_RUN =
  'run the tests with `npm test` (all files) or `node --import tsx test/run.ts test/x.test.ts` (some), ' +
  'which start private PostgreSQL, NATS, Redis and RabbitMQ servers';

/**
 * URL of a service the test run provides (from its TEST_*_URL variable). Without one, a
 * MissingDependencyError that says how to run the tests; tests call this in `before()`
 * (or lazily), so a file run without its services fails at once instead of hanging.
 */
export function serviceUrl(name: ServiceName): string {
  const value = process.env[SERVICE_ENV[name]];
  if (value) return value.replace(/\/+$/, '');
  throw new MissingDependencyError(`${LABEL[name]} for the tests: ${SERVICE_ENV[name]} is not set; ${HOW_TO_RUN}`);
}

/** Host and port of a service URL (postgres://user@host:port, nats://host:port, ...). */
export function hostPort(url: string): { host: string; port: number } {
  const u = new URL(url);
  const defaults: Record<string, number> = { 'postgres:': 5432, 'postgresql:': 5432, 'nats:': 4222, 'redis:': 6379, 'amqp:': 5672, 'http:': 80 };
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) || defaults[u.protocol] || 0 };
}

/** Resolves when something accepts TCP connections at the service's address; else a MissingDependencyError naming it. */
export async function assertReachable(name: ServiceName, url = serviceUrl(name), timeoutMs = 3000): Promise<void> {
  const { host, port } = hostPort(url);
  const until = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < until) {
    last = await tcpProbe(host, port);
    if (!last) return;
    await sleep(100);
  }
  throw new MissingDependencyError(`${LABEL[name]} is not reachable at ${host}:${port} (${SERVICE_ENV[name]}=${url}): ${last}`);
}

function tcpProbe(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = netConnect(port, host);
    const timer = setTimeout(() => (s.destroy(), resolve('connect timed out')), 1000);
    s.once('connect', () => (clearTimeout(timer), s.destroy(), resolve('')));
    s.once('error', (err) => (clearTimeout(timer), resolve(err.message)));
  });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.once('error', reject);
  });
}

/** Full path of a server binary: PATH, then the sbin directories (not in a non-root PATH), or null. */
export function findBinary(name: string, extraDirs: string[] = []): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin', ...extraDirs];
  for (const dir of dirs) {
    if (!dir) continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
}

export function requireBinary(name: string, extraDirs: string[] = []): string {
  const found = findBinary(name, extraDirs);
  if (found) return found;
  const pkg = PACKAGE[name];
  throw new MissingDependencyError(
    `${name} is not installed (not in PATH nor /usr/sbin${extraDirs.length ? ` nor ${extraDirs.join(', ')}` : ''})` +
      (pkg ? `: apt-get install ${pkg}, or run \`bash scripts/install.sh --test\`` : ''),
  );
}

/** Newest PostgreSQL server binaries directory (Debian keeps them out of PATH). */
function postgresBinDir(): string[] {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return [];
  return readdirSync(base)
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => join(base, v, 'bin'));
}

const SETPRIV = findBinary('setpriv');

export interface SpawnAs {
  /** Run as this user (only when we are root): PostgreSQL refuses to run as root. */
  user?: string;
}

/**
 * Spawns a server so it cannot outlive the process that started it: in its own process
 * group (a Ctrl-C reaches the test run, which stops it in order) and, through setpriv,
 * with a parent-death signal (SIGKILL when that process dies, even by SIGKILL).
 */
function spawnServer(command: string, args: string[], options: SpawnAs & { env?: NodeJS.ProcessEnv; cwd?: string } = {}): ChildProcess {
  const wrap: string[] = [];
  if (SETPRIV) {
    wrap.push(SETPRIV);
    if (options.user && process.getuid?.() === 0) wrap.push('--reuid', options.user, '--regid', options.user, '--init-groups');
    wrap.push('--pdeathsig', 'KILL', '--');
  } else if (options.user && process.getuid?.() === 0) {
    throw new MissingDependencyError(`setpriv (util-linux) is needed to run ${command} as ${options.user}`);
  }
  const [cmd, ...rest] = [...wrap, command, ...args];
  return spawn(cmd!, rest, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: options.env ?? process.env, cwd: options.cwd });
}

/**
 * A private server process on its own port, restartable in place. `start()` resolves once
 * it accepts connections; a server that exits first, or a missing binary, rejects with its
 * name and the end of its output.
 */
export class ServiceProcess {
  private proc?: ChildProcess;
  private output = '';

  constructor(
    readonly port: number,
    private readonly command: string,
    private readonly args: string[],
    private readonly options: SpawnAs & { label?: string; readyTimeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
  ) {}

  get label(): string {
    return this.options.label ?? this.command.split('/').pop()!;
  }

  async start(): Promise<void> {
    const binary = this.command.includes('/') ? this.command : requireBinary(this.command);
    if (!existsSync(binary)) requireBinary(this.command.split('/').pop()!);
    this.output = '';
    const proc = spawnServer(binary, this.args, this.options);
    this.proc = proc;
    const keep = (d: Buffer) => (this.output = (this.output + d.toString()).slice(-4000));
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    let spawnError: Error | undefined;
    proc.once('error', (err) => (spawnError = err));
    const until = Date.now() + (this.options.readyTimeoutMs ?? 20_000);
    for (;;) {
      if (spawnError) throw new MissingDependencyError(`${this.label}: could not start ${binary}: ${spawnError.message}`);
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`${this.label} (${binary}) exited with ${proc.exitCode ?? proc.signalCode} before accepting connections on port ${this.port}:\n${this.output.trim()}`);
      }
      if (!(await tcpProbe('127.0.0.1', this.port))) return;
      if (Date.now() > until) {
        await this.stop();
        throw new Error(`${this.label} (${binary}) did not accept connections on port ${this.port} within ${(this.options.readyTimeoutMs ?? 20_000) / 1000} s:\n${this.output.trim()}`);
      }
      await sleep(50);
    }
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /**
   * Stops it: `signal` first (default SIGKILL, as a crash), SIGKILL after `graceMs`. The
   * signal goes to its process group, so a server run by a wrapper script stops too.
   */
  async stop(signal: NodeJS.Signals = 'SIGKILL', graceMs = 10_000): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    const kill = (sig: NodeJS.Signals) => {
      try {
        process.kill(-proc.pid!, sig);
      } catch {
        proc.kill(sig);
      }
    };
    kill(signal);
    const timer = setTimeout(() => kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
    if (signal !== 'SIGKILL') {
      // What the wrapper left of its group after exiting (a server child still shutting down) has the grace period too.
      for (let t = 0; t < graceMs && groupAlive(proc.pid!); t += 100) await sleep(100);
      if (groupAlive(proc.pid!)) kill('SIGKILL');
    }
  }

  async restart(downMs = 500): Promise<void> {
    await this.stop();
    await sleep(downMs);
    await this.start();
  }
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * A private nats-server on a free port. `host` 0.0.0.0 lets other network namespaces reach
 * it; with `jetStreamDir`, JetStream is on and keeps its streams there.
 */
export async function startNats(host = '127.0.0.1', jetStreamDir?: string): Promise<ServiceProcess & { url: string }> {
  const binary = requireBinary('nats-server');
  return withFreePort(async (port) => {
    const js = jetStreamDir ? ['-js', '-sd', jetStreamDir] : [];
    const svc = new ServiceProcess(port, binary, ['-a', host, '-p', String(port), ...js], { label: 'NATS' });
    await svc.start();
    return Object.assign(svc, { url: `nats://127.0.0.1:${port}` });
  });
}

/** A private redis-server on a free port, keeping nothing on disk; `extraArgs` (e.g. `--dir`) are appended and win. */
export async function startRedis(extraArgs: string[] = []): Promise<ServiceProcess & { url: string }> {
  const binary = requireBinary('redis-server');
  return withFreePort(async (port) => {
    const svc = new ServiceProcess(
      port,
      binary,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmpdir(), ...extraArgs],
      { label: 'Redis' },
    );
    await svc.start();
    return Object.assign(svc, { url: `redis://127.0.0.1:${port}` });
  });
}

/** Tries a start on a fresh free port up to 3 times: another process may take the port in between. */
async function withFreePort<T>(start: (port: number) => Promise<T>): Promise<T> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await start(await freePort());
    } catch (err) {
      if (err instanceof MissingDependencyError) throw err;
      lastError = err;
    }
  }
  throw lastError;
}

/** A server the test run owns, with the URL tests reach it at. */
export interface RunningService {
  name: ServiceName;
  url: string;
  stop(): Promise<void>;
}

/**
 * A private PostgreSQL: initdb into a temporary directory (trust authentication, user
 * `postgres`), listening on 127.0.0.1 on a free port, its socket in that directory, tuned
 * for throw-away data (no fsync). As root it runs as the `postgres` user (it refuses root).
 */
export async function startPostgres(): Promise<RunningService> {
  const binDirs = postgresBinDir();
  const initdb = requireBinary('initdb', binDirs);
  const postgres = requireBinary('postgres', binDirs);
  const root = process.getuid?.() === 0;
  const user = root ? 'postgres' : undefined;
  let uid: number | undefined;
  let gid: number | undefined;
  if (root) {
    const ids = await idOf('postgres');
    if (!ids) throw new MissingDependencyError('the `postgres` user does not exist (apt-get install postgresql creates it); PostgreSQL refuses to run as root');
    ({ uid, gid } = ids);
  }
  const dir = mkdtempSync(join(tmpdir(), 'mss-pg-'));
  const data = join(dir, 'data');
  mkdirSync(data, { mode: 0o700 });
  if (uid !== undefined) {
    chownSync(dir, uid, gid!);
    chownSync(data, uid, gid!);
  }
  const init = spawnServer(initdb, ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C'], { user });
  let initOut = '';
  init.stdout!.on('data', (d: Buffer) => (initOut += d));
  init.stderr!.on('data', (d: Buffer) => (initOut += d));
  const initCode = await new Promise<number | null>((resolve) => {
    init.once('error', (err) => ((initOut += String(err)), resolve(-1)));
    init.once('exit', (code) => resolve(code));
  });
  if (initCode !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`PostgreSQL: initdb failed (exit ${initCode}):\n${initOut.trim()}`);
  }
  const svc = await withFreePort(async (port) => {
    const p = new ServiceProcess(
      port,
      postgres,
      ['-D', data, '-h', '127.0.0.1', '-p', String(port), '-k', dir, '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=300'],
      { label: 'PostgreSQL', user, readyTimeoutMs: 60_000 },
    );
    await p.start();
    return p;
  });
  const url = `postgres://postgres@127.0.0.1:${svc.port}`;
  await waitForPostgres(url);
  return {
    name: 'postgres',
    url,
    async stop() {
      await svc.stop('SIGINT'); // fast shutdown
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitForPostgres(url: string, timeoutMs = 30_000): Promise<void> {
  const { default: pg } = await import('pg');
  const until = Date.now() + timeoutMs;
  for (;;) {
    const client = new pg.Client({ connectionString: `${url}/postgres` });
    try {
      await client.connect();
      await client.query('SELECT 1');
      await client.end();
      return;
    } catch (err) {
      await client.end().catch(() => undefined);
      if (Date.now() > until) throw new Error(`PostgreSQL at ${url} does not answer: ${String(err)}`);
      await sleep(100);
    }
  }
}

async function idOf(user: string): Promise<{ uid: number; gid: number } | undefined> {
  const { readFileSync } = await import('node:fs');
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === user) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return undefined;
}

/**
 * A private etcd (v3 API over HTTP; Debian's etcd-server 3.4 or newer) on free client and
 * peer ports, its data in a temporary directory. `stop()`/`start()`/`restart()` stop and
 * start it in place (same ports, same data: leases and keys survive, as after a crash);
 * `dispose()` stops it and removes its directory.
 */
export async function startEtcdProcess(): Promise<ServiceProcess & { url: string; dataDir: string; dispose(): Promise<void> }> {
  const etcd = requireBinary('etcd');
  const dir = mkdtempSync(join(tmpdir(), 'mss-etcd-'));
  const dataDir = join(dir, 'data');
  const svc = await withFreePort(async (port) => {
    const peer = await freePort();
    const p = new ServiceProcess(
      port,
      etcd,
      [
        '--name', 'test', '--data-dir', dataDir,
        '--listen-client-urls', `http://127.0.0.1:${port}`, '--advertise-client-urls', `http://127.0.0.1:${port}`,
        '--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
        '--initial-cluster', `test=http://127.0.0.1:${peer}`, '--unsafe-no-fsync',
      ],
      // ETCD_UNSUPPORTED_ARCH must name the architecture on anything but amd64 (etcd refuses to start otherwise).
      { label: 'etcd', env: { ...process.env, ETCD_UNSUPPORTED_ARCH: process.arch === 'x64' ? '' : process.arch } },
    );
    await p.start();
    return p;
  });
  return Object.assign(svc, {
    url: `http://127.0.0.1:${svc.port}`,
    dataDir,
    async dispose() {
      await svc.stop('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  });
}

/** A private etcd for the whole test run. */
export async function startEtcd(): Promise<RunningService> {
  const svc = await startEtcdProcess();
  return { name: 'etcd', url: svc.url, stop: () => svc.dispose() };
}

/**
 * A private RabbitMQ node: its own node name, Erlang distribution and epmd ports, and
 * directories, so it shares nothing with a system RabbitMQ. User guest/guest (loopback).
 * `stop()`/`start()`/`restart()` stop and start the broker in place (same port, same data);
 * `dispose()` stops it and its epmd and removes its directory.
 */
export async function startRabbitMq(): Promise<ServiceProcess & { url: string; dispose(): Promise<void> }> {
  const server = requireBinary('rabbitmq-server');
  const dir = mkdtempSync(join(tmpdir(), 'mss-rabbitmq-'));
  const root = process.getuid?.() === 0;
  const ids = root ? await idOf('rabbitmq') : undefined;
  if (ids) chownSync(dir, ids.uid, ids.gid);
  // Its own epmd (Erlang's port mapper), in the foreground, so it stops with the server
  // instead of staying behind as a daemon.
  const epmdBin = findBinary('epmd', ['/usr/lib/erlang/bin']) ?? requireBinary('epmd');
  const epmd = await withFreePort(async (port) => {
    const p = new ServiceProcess(port, epmdBin, ['-port', String(port), '-address', '127.0.0.1'], { label: 'epmd', user: ids ? 'rabbitmq' : undefined });
    await p.start();
    return p;
  });
  const svc = await withFreePort(async (port) => {
    const dist = await freePort();
    const env = {
      ...process.env,
      HOME: dir,
      RABBITMQ_NODENAME: `mss${port}@localhost`,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(port),
      RABBITMQ_DIST_PORT: String(dist),
      ERL_EPMD_PORT: String(epmd.port),
      RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(dir, 'log'),
      RABBITMQ_LOGS: '-',
      RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
      RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq'),
      RABBITMQ_PID_FILE: join(dir, 'rabbitmq.pid'),
    };
    const p = new ServiceProcess(port, server, [], { label: 'RabbitMQ', env, user: ids ? 'rabbitmq' : undefined, readyTimeoutMs: 90_000 });
    await p.start();
    return p;
  });
  return Object.assign(svc, {
    url: `amqp://guest:guest@127.0.0.1:${svc.port}`,
    async dispose() {
      await svc.stop('SIGTERM', 20_000);
      await epmd.stop('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  });
}

/** Starts one service of the test run. */
export async function startService(name: ServiceName): Promise<RunningService> {
  switch (name) {
    case 'postgres':
      return startPostgres();
    case 'nats': {
      const dir = mkdtempSync(join(tmpdir(), 'mss-nats-'));
      const svc = await startNats('127.0.0.1', dir);
      return { name, url: svc.url, stop: async () => (await svc.stop('SIGTERM'), rmSync(dir, { recursive: true, force: true })) };
    }
    case 'redis': {
      const svc = await startRedis();
      return { name, url: svc.url, stop: () => svc.stop('SIGTERM') };
    }
    case 'etcd':
      return startEtcd();
    case 'rabbitmq': {
      const svc = await startRabbitMq();
      return { name, url: svc.url, stop: () => svc.dispose() };
    }
  }
}
