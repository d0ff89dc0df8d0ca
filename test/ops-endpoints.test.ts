import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { type ConfigInput, loadConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { type Platform, startPlatform } from '../src/platform.js';

const OPS_TOKEN = randomBytes(24).toString('base64url');
const run = promisify(execFile);

/** One role on its own in-process bus, as a cluster process would run it (its real HTTP server). */
async function startRole(role: 'gateway' | 'agent', overrides: ConfigInput = {}): Promise<Platform> {
  const config = loadConfig({
    env: {},
    overrides: {
      log: { level: 'warn' },
      gateway: { port: 0, id: `gw-ops-${randomBytes(3).toString('hex')}` },
      agent: { numWorkers: 1, healthPort: 0, webRtcBasePort: 0 },
      ...overrides,
    },
  });
  return startPlatform(config, [role], createLogger(config.log));
}

function baseOf(platform: Platform): string {
  return platform.gateway ? platform.gateway.url.replace(/^ws/, 'http') : `http://127.0.0.1:${platform.agent!.healthPort}`;
}

/** Every way a request without the right token might try to pass for an operator. */
const withoutTheToken: { what: string; headers: Record<string, string> }[] = [
  { what: 'no credentials', headers: {} },
  { what: 'a wrong token', headers: { authorization: `Bearer ${OPS_TOKEN.slice(0, -1)}${OPS_TOKEN.endsWith('x') ? 'y' : 'x'}` } },
  { what: 'the token plus one character', headers: { authorization: `Bearer ${OPS_TOKEN}x` } },
  { what: 'the token as Basic credentials', headers: { authorization: `Basic ${Buffer.from(`ops:${OPS_TOKEN}`).toString('base64')}` } },
  { what: 'forwarded-for loopback', headers: { 'x-forwarded-for': '127.0.0.1', 'x-real-ip': '127.0.0.1', forwarded: 'for=127.0.0.1' } },
  { what: 'an empty bearer', headers: { authorization: 'Bearer ' } },
];

async function expectUnauthorized(url: string, method: string, headers: Record<string, string>, what: string): Promise<void> {
  const res = await fetch(url, { method, headers });
  assert.equal(res.status, 401, `${method} ${url} with ${what}`);
  if (method !== 'HEAD') assert.equal(((await res.json()) as { code: string }).code, 'OPS_UNAUTHORIZED', `${method} ${url} with ${what}`);
}

/** The same checks on the gateway's client port and on the agent's probe port. */
function opsEndpointSuite(role: 'gateway' | 'agent', field: 'peers' | 'routers', metric: string): void {
  describe(`${role}: operational endpoints need the ops token`, () => {
    let platform: Platform;
    let base: string;
    before(async () => {
      platform = await startRole(role, { ops: { token: OPS_TOKEN } });
      base = baseOf(platform);
    });
    after(async () => platform.close());
    // The agent's state shows in its readiness (and its heartbeats); the gateway's is a property.
    const draining = async () => (role === 'gateway' ? platform.gateway!.draining : (await fetch(`${base}/ready`)).status === 503);

    test('/health and /ready are open and tell nothing but liveness and readiness', async () => {
      for (const path of ['/health', '/ready']) {
        const res = await fetch(`${base}${path}`);
        assert.equal(res.status, 200, path);
        const body = (await res.json()) as Record<string, unknown>;
        assert.deepEqual(Object.keys(body), ['status'], `${path} discloses only its status: ${JSON.stringify(body)}`);
      }
    });

    test('/metrics: 401 without the token, from loopback and whatever the headers or the URL spelling', async () => {
      for (const { what, headers } of withoutTheToken) {
        await expectUnauthorized(`${base}/metrics`, 'GET', headers, what);
        await expectUnauthorized(`${base}/metrics`, 'HEAD', headers, what);
      }
      for (const path of ['/%6Detrics', '/metrics?format=text', `/metrics?token=${OPS_TOKEN}`]) {
        await expectUnauthorized(`${base}${path}`, 'GET', {}, path);
      }
      for (const path of ['/Metrics', '//metrics', '/metrics/', '/./metrics', '/x/../metrics']) {
        const res = await fetch(`${base}${path}`);
        assert.ok([401, 404].includes(res.status), `${path}: ${res.status}`);
        assert.doesNotMatch(await res.text(), new RegExp(metric), path);
      }
    });

    test('/metrics: 200 with the token', async () => {
      const res = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${OPS_TOKEN}` } });
      assert.equal(res.status, 200);
      assert.match(await res.text(), new RegExp(`^${metric}[{ ]`, 'm'));
    });

    if (role === 'gateway') {
      test('/status (the service flow, with callers\' names): 401 without the token, 200 with it', async () => {
        for (const { what, headers } of withoutTheToken) await expectUnauthorized(`${base}/status`, 'GET', headers, what);
        await expectUnauthorized(`${base}/%73tatus`, 'GET', {}, 'a percent-encoded path');
        const res = await fetch(`${base}/status`, { headers: { authorization: `Bearer ${OPS_TOKEN}` } });
        assert.equal(res.status, 200);
        const body = (await res.json()) as { id: string; services: { instances: unknown; topCallers: { callers: unknown[] } } };
        assert.equal(body.id, platform.gateway!.id);
        assert.deepEqual(body.services.topCallers.callers, []);
      });
    }

    test('/drain: refused without the token (nothing drains), started and reported with it', async () => {
      for (const { what, headers } of withoutTheToken) {
        await expectUnauthorized(`${base}/drain`, 'POST', headers, what);
        await expectUnauthorized(`${base}/drain`, 'GET', headers, what);
      }
      await expectUnauthorized(`${base}/%64rain`, 'POST', {}, 'a percent-encoded path');
      assert.equal(await draining(), false, 'nothing drained');
      assert.equal((await fetch(`${base}/ready`)).status, 200);

      const auth = { authorization: `Bearer ${OPS_TOKEN}` };
      const started = await fetch(`${base}/drain`, { method: 'POST', headers: auth });
      assert.equal(started.status, 200);
      assert.deepEqual(await started.json(), { draining: true, ...(role === 'gateway' ? { rooms: 0 } : {}), [field]: 0, peers: 0 });
      assert.equal(await draining(), true);
      const ready = await fetch(`${base}/ready`);
      assert.equal(ready.status, 503);
      assert.equal(((await ready.json()) as { code: string }).code, 'DRAINING');
      const status = (await (await fetch(`${base}/drain`, { headers: auth })).json()) as Record<string, unknown>;
      assert.equal(status.draining, true);
      assert.equal(status[field], 0);
    });
  });

  describe(`${role}: without ops.token the operational endpoints stay closed`, () => {
    let platform: Platform;
    before(async () => {
      platform = await startRole(role);
    });
    after(async () => platform.close());

    test('any bearer is refused; the probes still answer', async () => {
      const base = baseOf(platform);
      for (const [method, path] of [['GET', '/metrics'], ['POST', '/drain'], ['GET', '/drain'], ...(role === 'gateway' ? ([['GET', '/status']] as const) : [])] as const) {
        await expectUnauthorized(`${base}${path}`, method, { authorization: 'Bearer undefined' }, 'no token configured');
        await expectUnauthorized(`${base}${path}`, method, {}, 'no token configured');
      }
      assert.equal((await fetch(`${base}/ready`)).status, 200, 'not drained');
      assert.equal((await fetch(`${base}/health`)).status, 200);
    });
  });
}

opsEndpointSuite('gateway', 'peers', 'mss_gateway_peers');
opsEndpointSuite('agent', 'routers', 'mss_agent_workers');

describe('preStop hook (scripts/prestop.mjs)', () => {
  let platform: Platform;
  before(async () => {
    platform = await startRole('gateway', { ops: { token: OPS_TOKEN } });
  });
  after(async () => platform.close());
  const prestop = (env: Record<string, string>) =>
    run(process.execPath, ['scripts/prestop.mjs', new URL(platform.gateway!.url).port, 'peers'], {
      env: { PATH: process.env.PATH ?? '', ...env },
      timeout: 10_000,
    }).then(
      () => 0,
      (err: { code?: number }) => err.code ?? -1,
    );

  test('without the token, or with a wrong one, it cannot drain the pod', async () => {
    assert.equal(await prestop({}), 1);
    assert.equal(await prestop({ MSS_OPS__TOKEN: `${OPS_TOKEN}x` }), 1);
    assert.equal(platform.gateway!.draining, false);
  });

  test('with the token from MSS_OPS__TOKEN it drains and returns once the pod is empty', async () => {
    assert.equal(await prestop({ MSS_OPS__TOKEN: OPS_TOKEN }), 0);
    assert.equal(platform.gateway!.draining, true);
  });
});
