/**
 * Idle WebSocket connections one gateway holds, and memory per connection.
 * Each connection is a real client: a token consumed at Nuve, a peer in a
 * room, no media. The platform runs as its own process; memory is read from
 * its process metrics before and after.
 *
 *   node --import tsx bench/idle-connections.ts [connections=5000] [rooms=50]
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import { EmbeddedProcess } from './embedded-process.js';

const total = Number(process.argv[2] ?? 5000);
const roomCount = Number(process.argv[3] ?? 50);

const platform = new EmbeddedProcess();
await platform.start();
const rooms = await Promise.all(Array.from({ length: roomCount }, (_, i) => platform.createRoom(`idle-${i}`)));
const tokens: string[] = [];
for (let i = 0; i < total; i++) tokens.push(await platform.token(rooms[i % roomCount]!, `u${i}`));

await sleep(1000);
const rss0 = await platform.metric('mss_process_resident_memory_bytes');
const heap0 = await platform.metric('mss_nodejs_heap_size_used_bytes');
const sockets: WebSocket[] = [];
const t0 = performance.now();
for (let i = 0; i < total; i += 100) {
  await Promise.all(
    tokens.slice(i, i + 100).map(
      (token) =>
        new Promise<void>((resolve, reject) => {
          const ws = new WebSocket(`${platform.gatewayUrl}/?token=${encodeURIComponent(token)}`);
          ws.once('open', () => {
            // Admitted once the gateway answers a request (token consumed, peer in its room).
            ws.send(JSON.stringify({ request: true, id: 1, method: 'getRouterRtpCapabilities', data: {} }));
          });
          ws.once('message', () => resolve());
          ws.once('error', reject);
          sockets.push(ws);
        }),
    ),
  );
}
const connectSec = (performance.now() - t0) / 1000;
await sleep(3000);
const rss1 = await platform.metric('mss_process_resident_memory_bytes');
const heap1 = await platform.metric('mss_nodejs_heap_size_used_bytes');
const open = sockets.filter((s) => s.readyState === WebSocket.OPEN).length;
for (const s of sockets) s.terminate();
await platform.stop();

console.log(`${open}/${total} idle connections held (${roomCount} rooms), opened at ${(total / connectSec).toFixed(0)}/s`);
console.log(`memory per connection: RSS ${((rss1 - rss0) / total / 1024).toFixed(1)} KiB, JS heap ${((heap1 - heap0) / total / 1024).toFixed(1)} KiB`);
console.log(`platform process RSS: ${(rss0 / 2 ** 20).toFixed(0)} MiB → ${(rss1 / 2 ** 20).toFixed(0)} MiB`);
