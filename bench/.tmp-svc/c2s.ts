import { z } from 'zod';
import { WebSocket } from 'ws';
import { buildMAuthHeader } from '../../src/core/mauth.js';
import { defineService, startService } from '../../src/services/index.js';
import { startEmbedded } from '../../test/helpers/platform.js';

const url = process.argv[2]!;
const platform = await startEmbedded({ log: { level: 'error' }, bus: { driver: 'nats', natsUrl: url }, gateway: { rateLimit: { requestsPerSecPerClient: 1_000_000 } } });
const def = defineService({ name: 'bench', version: '1', methods: { empty: { input: z.unknown(), access: 'external', handler: () => ({}) } } });
const svc = await startService(def, { config: { log: { level: 'warn', format: 'json' }, bus: { driver: 'nats', natsUrl: url } } });
const tenant = await platform.createTenant('bench');
while (platform.gateway!.services.discovery.instances('bench').length < 1) await new Promise((r) => setTimeout(r, 50));
async function client(): Promise<WebSocket> {
  const res = await fetch(`${platform.nuveUrl}/sessions`, { method: 'POST', headers: { authorization: buildMAuthHeader({ serviceId: tenant.id, key: tenant.key, cnonce: Math.random().toString(36).slice(2) }), 'content-type': 'application/json' }, body: JSON.stringify({ user: 'u', scopes: ['rpc'] }) });
  const { token } = (await res.json()) as { token: string };
  const ws = new WebSocket(`${platform.gatewayUrl}/?token=${token}`, 'protoo');
  await new Promise((r) => ws.once('open', r));
  return ws;
}
const CLIENTS = 8, WINDOW = 32, MS = 4000;
const wss = await Promise.all(Array.from({ length: CLIENTS }, client));
let done = 0; const lat: number[] = []; const end = Date.now() + MS; let errors = 0;
await Promise.all(wss.map((ws) => new Promise<void>((resolve) => {
  let id = 0; const sent = new Map<number, number>(); let open = 0;
  const send = () => { const i = ++id; sent.set(i, performance.now()); open++; ws.send(JSON.stringify({ request: true, id: i, method: 'call', data: { service: 'bench', method: 'empty', args: {} } })); };
  ws.on('message', (raw) => { const m = JSON.parse(String(raw)); if (!m.response) return; if (!m.ok) errors++; lat.push(performance.now() - sent.get(m.id)!); sent.delete(m.id); done++; open--; if (Date.now() < end) send(); else if (open === 0) resolve(); });
  for (let i = 0; i < WINDOW; i++) send();
})));
lat.sort((a, b) => a - b);
console.log(`c2s clients=${CLIENTS} window=${WINDOW}: ${Math.round(done / (MS / 1000))} calls/s, p50 ${lat[Math.floor(lat.length / 2)]!.toFixed(2)} ms, p99 ${lat[Math.floor(lat.length * 0.99)]!.toFixed(2)} ms, errors ${errors}`);
for (const ws of wss) ws.close();
await svc.stop(); await platform.close(); process.exit(0);
