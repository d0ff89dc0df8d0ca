/**
 * Signaling request throughput through the gateway: many clients sending a
 * cheap request (getRouterRtpCapabilities, answered by the gateway without
 * the agent) as fast as they get answers. The platform runs as its own
 * process; its CPU per request is read from its process metrics. Baseline:
 * a bare `ws` server answering the same protoo request in the same shape, in
 * its own process, driven by the same client — the ratio is what our gateway
 * costs over the wire format alone.
 *
 *   node --import tsx bench/signaling.ts [clients=50] [seconds=10]
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';
import { EmbeddedProcess } from './embedded-process.js';

const clients = Number(process.argv[2] ?? 50);
const seconds = Number(process.argv[3] ?? 10);

if (process.argv[2] === '--baseline-server') {
  // The baseline: protoo framing, one JSON parse and one JSON reply per request, nothing else.
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  // The same answer the gateway gives (the router's real RTP capabilities), so the bytes on the wire match.
  const caps: unknown = JSON.parse(process.env.BENCH_CAPS ?? '{}');
  wss.on('connection', (ws) =>
    ws.on('message', (raw) => {
      const msg = JSON.parse(raw.toString());
      ws.send(JSON.stringify({ response: true, id: msg.id, ok: true, data: caps }));
    }),
  );
  wss.on('listening', () => process.send!({ port: (wss.address() as { port: number }).port }));
  process.on('message', (m) => {
    if (m === 'cpu') process.send!({ cpu: process.cpuUsage() });
  });
} else {
  await main();
}

async function drive(urls: string[]): Promise<{ requests: number; elapsed: number }> {
  let requests = 0;
  const sockets = await Promise.all(
    urls.map(
      (url) =>
        new Promise<WebSocket>((resolve, reject) => {
          const ws = new WebSocket(url);
          ws.once('open', () => resolve(ws));
          ws.once('error', reject);
        }),
    ),
  );
  const until = Date.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    sockets.map(
      (ws) =>
        new Promise<void>((resolve) => {
          let id = 0;
          const send = () => ws.send(JSON.stringify({ request: true, id: ++id, method: 'getRouterRtpCapabilities', data: {} }));
          ws.on('message', () => {
            requests++;
            if (Date.now() < until) send();
            else resolve();
          });
          send();
        }),
    ),
  );
  const elapsed = (performance.now() - t0) / 1000;
  for (const ws of sockets) ws.close();
  return { requests, elapsed };
}

function capabilitiesOf(gatewayUrl: string, token: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${gatewayUrl}/?token=${encodeURIComponent(token)}`);
    ws.once('open', () => ws.send(JSON.stringify({ request: true, id: 1, method: 'getRouterRtpCapabilities', data: {} })));
    ws.once('message', (raw) => {
      ws.close();
      resolve(JSON.parse(raw.toString()).data);
    });
    ws.once('error', reject);
  });
}

async function main(): Promise<void> {
  // Platform.
  const platform = new EmbeddedProcess();
  await platform.start();
  const roomId = await platform.createRoom('bench');
  const urls = [];
  for (let i = 0; i < clients; i++) urls.push(`${platform.gatewayUrl}/?token=${encodeURIComponent(await platform.token(roomId, `u${i}`))}`);
  const caps = await capabilitiesOf(platform.gatewayUrl, await platform.token(roomId, 'probe'));
  const cpuBefore = await platform.metric('mss_process_cpu_seconds_total');
  const ours = await drive(urls);
  const cpuAfter = await platform.metric('mss_process_cpu_seconds_total');
  await platform.stop();

  // Baseline.
  const child = fork(fileURLToPath(import.meta.url), ['--baseline-server'], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, BENCH_CAPS: JSON.stringify(caps) },
  });
  const port = await new Promise<number>((r) => child.once('message', (m: { port: number }) => r(m.port)));
  const cpuOf = () => new Promise<NodeJS.CpuUsage>((r) => {
    child.once('message', (m: { cpu: NodeJS.CpuUsage }) => r(m.cpu));
    child.send('cpu');
  });
  const b0 = await cpuOf();
  const base = await drive(Array.from({ length: clients }, () => `ws://127.0.0.1:${port}`));
  const b1 = await cpuOf();
  child.kill();

  const oursRate = ours.requests / ours.elapsed;
  const baseRate = base.requests / base.elapsed;
  const oursCpuUs = ((cpuAfter - cpuBefore) * 1e6) / ours.requests;
  const baseCpuUs = (b1.user + b1.system - b0.user - b0.system) / base.requests;
  console.log(`gateway: ${clients} clients, ${seconds} s: ${oursRate.toFixed(0)} requests/s, ${oursCpuUs.toFixed(1)} µs CPU per request (whole platform process)`);
  console.log(`baseline bare ws: ${baseRate.toFixed(0)} requests/s, ${baseCpuUs.toFixed(1)} µs CPU per request`);
  console.log(`ratio gateway/baseline: throughput ×${(oursRate / baseRate).toFixed(2)}, CPU per request ×${(oursCpuUs / baseCpuUs).toFixed(2)}`);
}
