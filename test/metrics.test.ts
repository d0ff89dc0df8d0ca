import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startBroadcast } from './helpers/broadcaster.js';
import { audioRtpParameters } from './helpers/ffmpeg.js';
import { type EmbeddedPlatform, opsAuthorization, startEmbedded } from './helpers/platform.js';
import { ProtooClient } from './helpers/protoo-client.js';

let platform: EmbeddedPlatform;
before(async () => {
  platform = await startEmbedded();
});
after(async () => platform.close());

/** Parses Prometheus text into `name{labels}` → value. */
async function scrape(url: string): Promise<Map<string, number>> {
  const res = await fetch(url, { headers: opsAuthorization });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    const key = line.slice(0, i).replace(/process_role="[^"]*",?/, '').replace(',}', '}').replace('{}', '');
    out.set(key, Number(line.slice(i + 1)));
  }
  return out;
}

const metric = (m: Map<string, number>, key: string) => {
  assert.ok(m.has(key), `metric ${key} is exposed`);
  return m.get(key)!;
};

test('/metrics exposes the ROV set with correct values: 2 peers with 1 producer each', { timeout: 30_000 }, async () => {
  const roomId = await platform.createRoom('metrics');
  const peers = [];
  for (const name of ['alice', 'bob']) {
    const client = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, name));
    const rtpCapabilities = await client.request('getRouterRtpCapabilities');
    const send = await client.request('createWebRtcTransport', { producing: true });
    await client.request('createWebRtcTransport', { consuming: true });
    await client.request('join', { displayName: name, rtpCapabilities });
    await client.request('produce', { transportId: send.id, kind: 'audio', rtpParameters: { ...audioRtpParameters, mid: '0' } });
    peers.push(client);
  }
  await sleep(300); // the second peer's consumer of the first producer is created after its produce answer
  const m = await scrape(`${platform.nuveUrl}/metrics`);
  assert.equal(metric(m, 'mss_gateway_rooms'), 1);
  assert.equal(metric(m, 'mss_gateway_peers'), 2);
  assert.equal(metric(m, 'mss_agent_routers'), 1);
  assert.equal(metric(m, 'mss_agent_producers'), 2, 'publishers');
  assert.equal(metric(m, 'mss_agent_consumers'), 2, 'subscribers');
  assert.equal(metric(m, 'mss_agent_workers'), 1);
  assert.equal(metric(m, 'mss_agent_transports'), 4);
  assert.equal(metric(m, 'mss_gateway_join_duration_seconds_count'), 2);
  assert.ok(metric(m, 'mss_gateway_placements_total{agent="' + platform.agent!.id + '"}') >= 1);
  assert.ok(metric(m, 'mss_bus_request_duration_seconds_count{subject="agent.*.rpc",method="produce",outcome="ok"}') === 2);
  assert.ok(metric(m, 'mss_bus_request_duration_seconds_count{subject="nuve.token.consume",method="",outcome="ok"}') >= 2);
  assert.equal(metric(m, 'mss_gateway_draining'), 0);
  assert.equal(metric(m, 'mss_agent_draining'), 0);
  assert.ok(metric(m, 'mss_nuve_http_requests_total{method="POST",route="/rooms/:room/tokens",status="200"}') >= 2);
  for (const key of ['mss_agent_transport_failures_total', 'mss_nuve_rate_limited_total', 'mss_gateway_rate_limited_total']) {
    assert.ok([...m.keys()].some((k) => k.startsWith(key)), `${key} exposed`);
  }
  // The gateway serves the same registry on its own port.
  const g = await scrape(`${platform.gatewayUrl.replace(/^ws/, 'http')}/metrics`);
  assert.equal(metric(g, 'mss_gateway_peers'), 2);
  for (const p of peers) p.close();
});

test('RTP, bytes and scores are counted from real media', { timeout: 30_000 }, async () => {
  const roomId = await platform.createRoom('metrics-media');
  const http = platform.gatewayUrl.replace(/^ws/, 'http');
  const source = await startBroadcast(http, await platform.token(roomId, 'ffmpeg'));
  try {
    await sleep(2500);
    const first = await scrape(`${platform.nuveUrl}/metrics`);
    await sleep(1000);
    const second = await scrape(`${platform.nuveUrl}/metrics`);
    const key = 'mss_agent_rtp_packets_total{direction="in"}';
    assert.ok(metric(first, key) > 0);
    assert.ok(metric(second, key) > metric(first, key), 'packets in keep increasing');
    assert.ok(metric(second, 'mss_agent_rtp_bytes_total{direction="in"}') > 0);
    assert.ok(metric(second, 'mss_agent_producer_score_count') > 0, 'producer scores observed');
  } finally {
    await source.stop();
  }
});

test('the Grafana dashboard only queries metrics the platform exposes', async () => {
  const { readFileSync } = await import('node:fs');
  const dashboard = JSON.parse(readFileSync('deploy/grafana/mediasoup-signal.json', 'utf8'));
  const exprs: string[] = dashboard.panels.flatMap((p: any) => p.targets.map((t: any) => t.expr));
  const used = new Set(exprs.flatMap((e) => e.match(/mss_[a-z_]+/g) ?? []).map((n) => n.replace(/_(bucket|sum|count)$/, '')));
  const exposed = new Set([...(await scrape(`${platform.nuveUrl}/metrics`)).keys()].map((k) => k.replace(/\{.*$/, '').replace(/_(bucket|sum|count)$/, '')));
  assert.ok(used.size >= 15);
  for (const name of used) assert.ok(exposed.has(name), `dashboard uses ${name}, which is exposed`);
});
