/**
 * `npm test` after the typecheck: the test run with its own servers.
 *
 *   node --import tsx test/run.ts [test/x.test.ts ...]      (default: test/unit/*.test.ts, then every test/*.test.ts)
 *
 * 1. Starts private PostgreSQL, NATS (JetStream), Redis and RabbitMQ servers on free ports
 *    (test/helpers/services.ts) and hands their URLs to the tests as TEST_PG_URL,
 *    TEST_NATS_URL, TEST_REDIS_URL, TEST_RABBITMQ_URL. A URL already set in the environment
 *    is used as it is (that server is not started). TEST_SERVICES lists the servers (default
 *    `postgres,nats,redis,rabbitmq`; `etcd` is known too). The cluster suites start brokers
 *    of their own and run once per bus; TEST_CLUSTER_BUSES=nats (or rabbitmq) runs one.
 * 2. Runs each file with node's test runner, one at a time, each in its own process group
 *    with a time limit (TEST_FILE_TIMEOUT_MIN, default 20): a file that does not finish is
 *    named and killed with everything it started; processes a file leaves behind are
 *    named and killed.
 * 3. Stops the servers, also after a failure, Ctrl-C or SIGTERM, and prints the totals
 *    (node's summary lines and `N passed, N failed`).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { type RunningService, SERVICE_ENV, type ServiceName, startService } from './helpers/services.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const KNOWN: ServiceName[] = ['postgres', 'nats', 'redis', 'etcd', 'rabbitmq'];
const FILE_TIMEOUT_MS = Number(process.env.TEST_FILE_TIMEOUT_MIN ?? 20) * 60_000;
const say = (line: string) => process.stdout.write(`test/run.ts: ${line}\n`);

/** The test files of one directory, by name. */
const testsIn = (dir: string): string[] =>
  readdirSync(join(ROOT, dir))
    .filter((f) => f.endsWith('.test.ts'))
    .sort()
    .map((f) => join(dir, f));

// The unit tests (fake bus and agents, seconds) run first, so a logic slip shows before the long suites.
const files = process.argv.slice(2).length ? process.argv.slice(2) : [...testsIn('test/unit'), ...testsIn('test')];

const wanted = (process.env.TEST_SERVICES ?? 'postgres,nats,redis,rabbitmq')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean) as ServiceName[];
for (const name of wanted) {
  if (!KNOWN.includes(name)) {
    console.error(`test/run.ts: unknown service "${name}" in TEST_SERVICES (known: ${KNOWN.join(', ')})`);
    process.exit(2);
  }
}

const services: RunningService[] = [];
let current: ChildProcess | undefined;
let interrupted: NodeJS.Signals | undefined;

async function stopServices(): Promise<void> {
  const stopping = services.splice(0);
  await Promise.all(stopping.map((s) => s.stop().catch((err: unknown) => say(`stopping ${s.name}: ${String(err)}`))));
}

/** Signals a test file's process group (signal 0: is any of it still alive?). */
function killGroup(proc: ChildProcess, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-proc.pid!, signal);
    return true;
  } catch {
    return false;
  }
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as NodeJS.Signals[]) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = signal;
    say(`${signal}: stopping the running test file and the servers`);
    if (current) {
      killGroup(current, signal);
      setTimeout(() => current && killGroup(current, 'SIGKILL'), 10_000).unref();
    }
  });
}

/** "pid command" of the live processes of a process group (from /proc; zombies do not count). */
function groupMembers(pgid: number): string[] {
  const found: string[] = [];
  let pids: string[] = [];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return killGroup({ pid: pgid } as ChildProcess, 0) ? [`process group ${pgid}`] : [];
  }
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) !== pgid || fields[0] === 'Z') continue;
      found.push(`${pid} ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim().slice(0, 160)}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

interface FileResult {
  file: string;
  code: number | null;
  counts: Record<string, number>;
  note?: string;
}

const COUNT_KEYS = ['tests', 'suites', 'pass', 'fail', 'cancelled', 'skipped', 'todo', 'duration_ms'];

async function runFile(file: string, env: NodeJS.ProcessEnv): Promise<FileResult> {
  const tty = process.stdout.isTTY;
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', '--test', '--test-force-exit', `--test-reporter=${tty ? 'spec' : 'tap'}`, file],
    { cwd: ROOT, env: { ...env, ...(tty ? { FORCE_COLOR: '1' } : {}) }, stdio: ['ignore', 'pipe', 'inherit'], detached: true },
  );
  current = proc;
  const counts: Record<string, number> = {};
  let pending = '';
  proc.stdout!.on('data', (chunk: Buffer) => {
    process.stdout.write(chunk);
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const raw of lines) {
      // eslint-disable-next-line no-control-regex
      const m = /^(?:#|ℹ) (\w+) ([\d.]+)\s*$/.exec(raw.replace(/\x1b\[[0-9;]*m/g, ''));
      if (m && COUNT_KEYS.includes(m[1]!)) counts[m[1]!] = Number(m[2]);
    }
  });
  let note: string | undefined;
  const timer = setTimeout(() => {
    note = `did not finish within ${FILE_TIMEOUT_MS / 60_000} min: killed with the processes it started`;
    say(`${file} ${note}`);
    killGroup(proc, 'SIGTERM');
    setTimeout(() => killGroup(proc, 'SIGKILL'), 5000).unref();
  }, FILE_TIMEOUT_MS);
  const code = await new Promise<number | null>((resolve) => {
    proc.once('error', (err) => ((note = String(err)), resolve(1)));
    proc.once('close', (c) => resolve(c));
  });
  clearTimeout(timer);
  current = undefined;
  // Whatever the file started and left running (its process group) goes now; a moment's grace
  // first, for processes that are already exiting.
  for (let i = 0; i < 20 && groupMembers(proc.pid!).length; i++) await sleep(100);
  const left = groupMembers(proc.pid!);
  if (left.length) {
    say(`${file} left processes running, killing them:\n${left.map((l) => `    ${l}`).join('\n')}`);
    note ??= 'left processes running';
    killGroup(proc, 'SIGKILL');
  }
  return { file, code, counts, note };
}

async function main(): Promise<number> {
  const t0 = Date.now();
  const { NODE_TEST_CONTEXT: _, ...env }: NodeJS.ProcessEnv = { ...process.env }; // each file is a run of its own
  const toStart = wanted.filter((name) => !process.env[SERVICE_ENV[name]]);
  for (const name of wanted.filter((n) => !toStart.includes(n))) say(`${name}: using ${SERVICE_ENV[name]}=${process.env[SERVICE_ENV[name]]}`);
  const started = await Promise.allSettled(toStart.map((name) => startService(name)));
  for (const result of started) if (result.status === 'fulfilled') services.push(result.value);
  const failures = started.flatMap((r, i) => (r.status === 'rejected' ? [`${toStart[i]}: ${r.reason instanceof Error ? r.reason.message : String(r.reason)}`] : []));
  if (failures.length) {
    for (const f of failures) console.error(`test/run.ts: cannot start ${f}`);
    return 1;
  }
  for (const s of services) env[SERVICE_ENV[s.name]] = s.url;
  if (services.length) say(`private servers up in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${services.map((s) => `${SERVICE_ENV[s.name]}=${s.url}`).join(' ')}`);
  if (interrupted) return 130;

  const results: FileResult[] = [];
  for (const file of files) {
    if (interrupted) break;
    results.push(await runFile(file, env));
  }

  const total: Record<string, number> = Object.fromEntries(COUNT_KEYS.map((k) => [k, 0]));
  for (const r of results) for (const k of COUNT_KEYS) total[k]! += r.counts[k] ?? 0;
  total.duration_ms = Date.now() - t0;
  const bad = results.filter((r) => r.code !== 0 || r.note);
  say(`${results.length} of ${files.length} file(s) in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  for (const r of bad) say(`  ${r.file}: ${r.code !== 0 ? `exit ${r.code}` : 'passed'}${r.counts.fail ? `, ${r.counts.fail} failed` : ''}${r.note ? ` (${r.note})` : ''}`);
  if (interrupted) say(`interrupted by ${interrupted}; ${files.length - results.length} file(s) not run`);
  for (const k of COUNT_KEYS) process.stdout.write(`# ${k} ${Math.round(total[k]!)}\n`);
  // Tests cancelled by a failing hook count as failed; so does a file that failed without counting any.
  const failed = total.fail! + total.cancelled! + results.filter((r) => r.code !== 0 && !r.counts.fail && !r.counts.cancelled).length;
  process.stdout.write(`${total.pass} passed, ${failed} failed, ${total.skipped} skipped\n`);
  if (interrupted) return interrupted === 'SIGINT' ? 130 : 143;
  return results.some((r) => r.code !== 0 || (r.note && r.note !== 'left processes running')) || results.length < files.length ? 1 : 0;
}

let exitCode = 1;
try {
  exitCode = await main();
} catch (err) {
  console.error('test/run.ts:', err);
} finally {
  await stopServices();
}
process.exit(exitCode);
