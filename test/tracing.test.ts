import assert from 'node:assert/strict';
import { type Server, createServer } from 'node:http';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildMAuthHeader } from '../src/core/mauth.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';
import { ProtooClient } from './helpers/protoo-client.js';

/** An OTLP/HTTP (JSON) receiver, as Jaeger, Tempo or SkyWalking would run it. */
interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  service: string;
}
const received: ReceivedSpan[] = [];
let receiver: Server;
let platform: EmbeddedPlatform;

before(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      assert.equal(req.url, '/v1/traces');
      const body = JSON.parse(Buffer.concat(chunks).toString());
      for (const rs of body.resourceSpans ?? []) {
        const service = rs.resource?.attributes?.find((a: any) => a.key === 'service.name')?.value?.stringValue;
        for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) received.push({ ...s, service });
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const port = (receiver.address() as { port: number }).port;
  platform = await startEmbedded({ tracing: { enabled: true, otlpUrl: `http://127.0.0.1:${port}/v1/traces` } });
});
after(async () => {
  await platform.close();
  receiver.close();
});

test('a Nuve request that reaches the gateway and the agent arrives as one trace', { timeout: 30_000 }, async () => {
  const roomId = await platform.createRoom('traced');
  const client = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, 'alice'));
  await client.request('join', { displayName: 'alice', rtpCapabilities: await client.request('getRouterRtpCapabilities') });

  // DELETE /rooms/:room → Nuve asks the gateway (closeRoom) → the gateway asks the agent (closeRouter).
  const su = platform.nuve!.superServiceRecord;
  const res = await fetch(`${platform.nuveUrl}/rooms/${roomId}`, {
    method: 'DELETE',
    headers: { authorization: buildMAuthHeader({ serviceId: su.id, key: su.key, cnonce: 'trace-1' }) },
  });
  assert.equal(res.status, 200);
  await client.closed;

  const until = Date.now() + 10_000;
  const find = (name: string) => received.find((s) => s.name === name);
  while (!(find('DELETE /rooms/:room') && find('handle agent.*.rpc closeRouter')) && Date.now() < until) await sleep(200);
  const root = find('DELETE /rooms/:room');
  const agentSpan = find('handle agent.*.rpc closeRouter');
  assert.ok(root, 'Nuve request span exported');
  assert.ok(agentSpan, 'agent operation span exported');
  assert.equal(agentSpan.traceId, root.traceId, 'one trace from Nuve to the agent');
  const gatewaySpan = received.find((s) => s.name === 'handle gateway.*.rpc closeRoom' && s.traceId === root.traceId);
  assert.ok(gatewaySpan, 'the gateway handled its part inside the same trace');

  // The chain of parents leads from the agent span back to the Nuve request span.
  const byId = new Map(received.map((s) => [s.spanId, s]));
  let node: ReceivedSpan | undefined = agentSpan;
  const chain: string[] = [];
  while (node) {
    chain.push(node.name);
    node = node.parentSpanId ? byId.get(node.parentSpanId) : undefined;
  }
  assert.equal(chain[chain.length - 1], 'DELETE /rooms/:room', chain.join(' <- '));
  assert.ok(chain.includes('handle gateway.*.rpc closeRoom'));
  assert.equal(root.service, 'mediasoup-signal');
  // Signaling requests are traced too.
  assert.ok(received.some((s) => s.name === 'signaling join'));
});
