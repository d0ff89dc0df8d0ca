import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { METRICS_SUBJECT } from '../src/core/metrics.js';
import { type CallResult, type NuveHarness, startNuve } from './helpers/nuve-harness.js';

const token = randomBytes(24).toString('base64url');
const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` });

function opsRefused(res: CallResult): void {
  assert.equal(res.status, 401, res.text);
  assert.equal(res.json?.code, 'OPS_UNAUTHORIZED', res.text);
  assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer /);
  assert.ok(!res.text.includes('mss_'), 'no metric leaks');
}

describe('Nuve operational endpoints with ops.token', () => {
  let h: NuveHarness;
  /** Gathers that reached the bus: every process answers each one, so each costs the whole cluster. */
  let gathers = 0;
  before(async () => {
    h = await startNuve({ metrics: true, opsToken: token });
    h.bus.respond(METRICS_SUBJECT, async () => {
      gathers++;
      await sleep(50); // a process that takes its time to answer, as a loaded one does
      return [];
    });
  });
  after(async () => h.close());

  for (const path of ['/metrics', '/metrics/cluster']) {
    test(`${path}: no token, a wrong one or MAuth → 401 OPS_UNAUTHORIZED; the token → 200`, async () => {
      opsRefused(await h.call('GET', path, { authorization: false }));
      opsRefused(await h.call('GET', path, { authorization: bearer(`${token}x`).authorization }));
      opsRefused(await h.call('GET', path, { authorization: bearer(token.slice(0, -1)).authorization }));
      opsRefused(await h.call('GET', path, { authorization: `Basic ${Buffer.from(`ops:${token}`).toString('base64')}` }));
      opsRefused(await h.call('GET', path)); // the superService's MAuth is not the ops secret
      const ok = await h.call('GET', path, { authorization: bearer(token).authorization });
      assert.equal(ok.status, 200, ok.text);
      assert.match(ok.headers.get('content-type') ?? '', /text\/plain/);
    });
  }

  test('a flood of concurrent /metrics/cluster scrapes shares one gather', async () => {
    await sleep(1100); // past the reuse of any earlier scrape
    const before = gathers;
    const answers = await Promise.all(Array.from({ length: 200 }, () => h.call('GET', '/metrics/cluster', { authorization: bearer(token).authorization })));
    assert.ok(answers.every((a) => a.status === 200));
    assert.ok(gathers - before <= 2, `${gathers - before} gathers for 200 scrapes`);
    // A scrape after the reuse period gathers afresh.
    await sleep(1100);
    const again = gathers;
    assert.equal((await h.call('GET', '/metrics/cluster', { authorization: bearer(token).authorization })).status, 200);
    assert.equal(gathers, again + 1);
  });

  test('unauthenticated scrapes trigger no gather at all', async () => {
    await sleep(1100);
    const before = gathers;
    await Promise.all(Array.from({ length: 50 }, () => h.call('GET', '/metrics/cluster', { authorization: false })));
    assert.equal(gathers, before);
  });
});

describe('Nuve operational endpoints without ops.token', () => {
  let h: NuveHarness;
  before(async () => {
    h = await startNuve({ metrics: true });
  });
  after(async () => h.close());

  test('they are closed: no bearer token opens them', async () => {
    for (const path of ['/metrics', '/metrics/cluster']) {
      opsRefused(await h.call('GET', path, { authorization: false }));
      opsRefused(await h.call('GET', path, { authorization: 'Bearer ' }));
      opsRefused(await h.call('GET', path, { authorization: bearer('undefined').authorization }));
    }
  });
});
