import assert from 'node:assert/strict';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { measureAgentRtts } from '../client/src/sdk/agent-rtt.js';

/** Waits at least `ms` by performance.now() (timers may fire up to ~1 ms early against it). */
async function holdFor(ms: number): Promise<void> {
  const start = performance.now();
  for (let left = ms; left > 0; left = ms - (performance.now() - start)) {
    await new Promise((resolve) => setTimeout(resolve, Math.ceil(left)));
  }
}

interface ProbeServer {
  url: string;
  /** Requests received, and on how many distinct TCP connections. */
  requests: number;
  connections: number;
}

const servers: Server[] = [];
after(async () => {
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/**
 * An agent's probe endpoint on 127.0.0.1, like the real one (204, CORS, no-store),
 * answering request n (0-based) after `delayMs(n)` ms, or never when that is null.
 */
async function probeServer(delayMs: (n: number) => number | null): Promise<ProbeServer> {
  const state = { url: '', requests: 0, connections: 0 };
  const server = createServer(async (_req: IncomingMessage, res: ServerResponse) => {
    const delay = delayMs(state.requests++);
    if (delay === null) return; // never answers
    await holdFor(delay);
    res.writeHead(204, { 'access-control-allow-origin': '*', 'cache-control': 'no-store' }).end();
  });
  server.on('connection', () => state.connections++);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/probe`;
  return state;
}

test('ranks agents by RTT, never under the server delay, and omits the one that never answers, within the timeout', async () => {
  const fast = await probeServer(() => 5);
  const slow = await probeServer(() => 60);
  const dead = await probeServer(() => null);
  const start = performance.now();
  const rtts = await measureAgentRtts(
    [
      { agentId: 'fast', url: fast.url },
      { agentId: 'slow', url: slow.url },
      { agentId: 'dead', url: dead.url },
    ],
    400,
  );
  const elapsed = performance.now() - start;

  assert.deepEqual(Object.keys(rtts).sort(), ['fast', 'slow']);
  assert.ok(rtts.fast! >= 5, `fast ${rtts.fast} ≥ its 5 ms delay`);
  assert.ok(rtts.slow! >= 60, `slow ${rtts.slow} ≥ its 60 ms delay`);
  assert.ok(rtts.fast! < rtts.slow!, `fast ${rtts.fast} < slow ${rtts.slow}`);
  assert.equal(dead.requests, 1, 'the silent agent got its first request');
  // The silent agent holds the measurement until the deadline, and no longer.
  assert.ok(elapsed >= 390, `waited for the deadline (${elapsed.toFixed(0)} ms)`);
  assert.ok(elapsed < 700, `bounded by the timeout (${elapsed.toFixed(0)} ms)`);
  // Three sequential requests each, on one kept-alive connection.
  assert.equal(fast.requests, 3);
  assert.equal(slow.requests, 3);
  assert.equal(fast.connections, 1, 'the connection is reused');
});

test('the minimum of several requests is the RTT: a slow first request does not count', async () => {
  const server = await probeServer((n) => (n === 0 ? 200 : 0));
  const rtts = await measureAgentRtts([{ agentId: 'a', url: server.url }], 3000);
  assert.equal(server.requests, 3);
  assert.ok(rtts.a! < 100, `reported ${rtts.a} ms, well under the 200 ms first request`);
});

test('an agent that answered once keeps its best value when later requests time out', async () => {
  const server = await probeServer((n) => (n === 0 ? 10 : null));
  const start = performance.now();
  const rtts = await measureAgentRtts([{ agentId: 'a', url: server.url }], 300);
  const elapsed = performance.now() - start;
  assert.equal(server.requests, 2);
  assert.ok(rtts.a! >= 10 && rtts.a! < 300, `kept ${rtts.a} ms`);
  assert.ok(elapsed < 600, `bounded by the timeout (${elapsed.toFixed(0)} ms)`);
});

test('agents are measured concurrently', async () => {
  const agents = await Promise.all([0, 1, 2].map(() => probeServer(() => 100)));
  const start = performance.now();
  const rtts = await measureAgentRtts(
    agents.map((a, i) => ({ agentId: `a${i}`, url: a.url })),
    5000,
  );
  const elapsed = performance.now() - start;
  assert.deepEqual(Object.keys(rtts).sort(), ['a0', 'a1', 'a2']);
  for (const a of agents) assert.equal(a.requests, 3);
  // 3 × 100 ms per agent side by side; one after the other would take ≥ 900 ms.
  assert.ok(elapsed < 750, `concurrent (${elapsed.toFixed(0)} ms)`);
});

test('never throws: unreachable, malformed, error status, missing fetch', async () => {
  // A port with nothing listening: connection refused.
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const refusedUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/probe`;
  await new Promise((resolve) => closed.close(resolve));

  const failing = createServer((_req, res) => res.writeHead(503).end());
  servers.push(failing);
  await new Promise<void>((resolve) => failing.listen(0, '127.0.0.1', resolve));
  const failingUrl = `http://127.0.0.1:${(failing.address() as AddressInfo).port}/probe`;

  const ok = await probeServer(() => 0);
  const rtts = await measureAgentRtts(
    [
      { agentId: 'refused', url: refusedUrl },
      { agentId: 'bad', url: 'not a url' },
      { agentId: 'error', url: failingUrl },
      { agentId: 'ok', url: ok.url },
    ],
    2000,
  );
  assert.deepEqual(Object.keys(rtts), ['ok']);

  assert.deepEqual(await measureAgentRtts([], 100), {});
  assert.deepEqual(await measureAgentRtts(null as never, 100), {});
  // No fetch at all (null does not take the default).
  assert.deepEqual(await measureAgentRtts([{ agentId: 'x', url: ok.url }], 100, null as never), {});
});

test('bounded even when the fetch implementation ignores the abort signal', async () => {
  const hanging = (() => new Promise<never>(() => {})) as typeof fetch;
  const start = performance.now();
  assert.deepEqual(await measureAgentRtts([{ agentId: 'x', url: 'http://127.0.0.1:9/' }], 200, hanging), {});
  assert.ok(performance.now() - start < 500);
});
