import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MissingDependencyError, ServiceProcess, freePort, requireBinary, serviceUrl } from './helpers/services.js';

/** Alive and not a zombie waiting for its new parent to reap it. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** test/run.ts (what `npm test` runs) on fixture files, without servers. */
async function runner(files: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; ms: number }> {
  const t0 = Date.now();
  const { NODE_TEST_CONTEXT: _, ...outer } = process.env; // not a child of this test run, but a run of its own
  const proc = spawn(process.execPath, ['--import', 'tsx', 'test/run.ts', ...files], {
    env: { ...outer, TEST_SERVICES: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((resolve) => proc.once('close', resolve));
  return { code, out, ms: Date.now() - t0 };
}

describe('test run (test/run.ts)', () => {
  test('a passing file: exit 0 and the totals as closing lines', async () => {
    const r = await runner(['test/fixtures/passes.ts']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^# pass 1$/m);
    assert.match(r.out, /^1 passed, 0 failed, 0 skipped$/m);
  });

  test('a file that never ends is named and killed at its time limit', { timeout: 60_000 }, async () => {
    const r = await runner(['test/fixtures/hangs.ts', 'test/fixtures/passes.ts'], { TEST_FILE_TIMEOUT_MIN: '0.05' });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /test\/fixtures\/hangs\.ts did not finish within 0\.05 min: killed/);
    assert.match(r.out, /^# pass 1$/m, 'the files after it still run');
    assert.ok(r.ms < 30_000, `took ${r.ms} ms`);
  });

  test('processes a file leaves running are named and killed', { timeout: 60_000 }, async () => {
    const r = await runner(['test/fixtures/leaves-process.ts']);
    assert.equal(r.code, 0, r.out);
    const pid = Number(/leftover pid (\d+)/.exec(r.out)?.[1]);
    assert.ok(pid > 0, r.out);
    assert.match(r.out, new RegExp(`left processes running, killing them:\\n\\s+${pid} sleep 300`));
    for (let i = 0; i < 30 && alive(pid); i++) await sleep(100); // SIGKILL is sent; its delivery is asynchronous
    assert.ok(!alive(pid), 'the leftover process is gone');
  });
});

describe('test services (test/helpers/services.ts)', () => {
  test('a URL the run did not provide: the error names the variable and how to run the tests', () => {
    const saved = process.env.TEST_ETCD_URL;
    delete process.env.TEST_ETCD_URL;
    try {
      assert.throws(() => serviceUrl('etcd'), (err: unknown) => err instanceof MissingDependencyError && /TEST_ETCD_URL is not set.*npm test/.test(err.message));
    } finally {
      if (saved !== undefined) process.env.TEST_ETCD_URL = saved;
    }
  });

  test('a missing binary is named with its Debian package', () => {
    assert.throws(() => requireBinary('redis-server-that-is-not-there'), /redis-server-that-is-not-there is not installed/);
  });

  test('a server that exits before listening: its exit code and output, at once', async () => {
    const port = await freePort();
    const svc = new ServiceProcess(port, '/bin/sh', ['-c', 'echo "no config, bye" >&2; exit 3'], { label: 'fake server' });
    const t0 = Date.now();
    await assert.rejects(svc.start(), /fake server \(\/bin\/sh\) exited with 3 before accepting connections .*\n.*no config, bye/);
    assert.ok(Date.now() - t0 < 5000);
  });
});
