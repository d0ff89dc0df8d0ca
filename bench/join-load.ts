import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { ProtooClient } from '../test/helpers/protoo-client.js';
import { EmbeddedProcess } from './embedded-process.js';

/** A token and the gateway URL it names, for user `i`. */
export type TokenSource = (i: number) => Promise<{ token: string; gatewayUrl: string }>;

export interface JoinResults {
  sequential: { p50: number; p99: number; n: number };
  loaded: { p50: number; p99: number; n: number; joinsPerSec: number; concurrency: number };
}

function summary(ms: number[]): { p50: number; p99: number; n: number } {
  const s = [...ms].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
  return { p50: at(50), p99: at(99), n: s.length };
}

/**
 * What a mediasoup-demo client does once it holds a token: connect (the
 * gateway consumes the token at Nuve), getRouterRtpCapabilities,
 * createWebRtcTransport ×2, join. Timed from connect to the join response.
 */
async function joinOnce(source: TokenSource, i: number): Promise<{ ms: number; client: ProtooClient }> {
  const { token, gatewayUrl } = await source(i);
  const t0 = performance.now();
  // The subprotocol a stock protoo-client asks for (protoo-server refuses a client without it).
  const client = await ProtooClient.connect(gatewayUrl, token, '', {}, ['protoo']);
  const rtpCapabilities = await client.request('getRouterRtpCapabilities');
  await client.request('createWebRtcTransport', { producing: true });
  await client.request('createWebRtcTransport', { consuming: true });
  await client.request('join', { displayName: `user-${i}`, rtpCapabilities });
  return { ms: performance.now() - t0, client };
}

/** Latency one join at a time, then throughput with `concurrency` joins in flight (everyone stays until the end). */
export async function measureJoins(source: TokenSource, total: number, concurrency: number): Promise<JoinResults> {
  const sequential: number[] = [];
  for (let i = 0; i < Math.min(100, total); i++) {
    const { ms, client } = await joinOnce(source, i);
    sequential.push(ms);
    client.close();
    await client.closed;
  }
  const clients: ProtooClient[] = [];
  const loaded: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const { ms, client } = await joinOnce(source, 1000 + next++);
        loaded.push(ms);
        clients.push(client);
      }
    }),
  );
  const elapsedSec = (performance.now() - t0) / 1000;
  for (const c of clients) c.close();
  await Promise.all(clients.map((c) => c.closed));
  return {
    sequential: summary(sequential),
    loaded: { ...summary(loaded), joinsPerSec: total / elapsedSec, concurrency },
  };
}

export function printJoins(label: string, r: JoinResults): void {
  const f = (n: number) => n.toFixed(2);
  console.log(`${label}: one at a time (n=${r.sequential.n}) p50 ${f(r.sequential.p50)} ms, p99 ${f(r.sequential.p99)} ms`);
  console.log(
    `${label}: ${r.loaded.n} joins, ${r.loaded.concurrency} in flight: ${r.loaded.joinsPerSec.toFixed(0)} joins/s, p50 ${f(r.loaded.p50)} ms, p99 ${f(r.loaded.p99)} ms`,
  );
}

/** bench/protoo-baseline (the mediasoup-demo-style server) as its own OS process; its token is `room:peer`. */
export async function startProtooBaseline(): Promise<{ pid: number; url: string; stop(): Promise<void> }> {
  // Its WebRtcServer's port: below Linux's ephemeral range (32768-60999), where a client socket may hold it, and the platform's (20000-29999).
  const webRtcPort = 10000 + Math.floor(Math.random() * 10000);
  const proc: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'bench/protoo-baseline.ts', String(webRtcPort)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  while (!/listening (\d+)/.test(out)) {
    if (proc.exitCode !== null) throw new Error(`protoo baseline exited: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    pid: proc.pid!,
    url: `ws://127.0.0.1:${/listening (\d+)/.exec(out)![1]}`,
    async stop() {
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    },
  };
}

/** The embedded platform with `roomCount` rooms, as the join benches drive it; users are spread over the rooms by number. */
export async function startPlatformRooms(roomCount: number, roomPrefix: string): Promise<{
  embedded: EmbeddedProcess;
  /** Tokens for `users` in this round (names `user-<round>-<u>`, room `u mod roomCount`), issued 50 at a time. */
  tokens(users: readonly number[], round: number): Promise<Map<number, string>>;
}> {
  const embedded = new EmbeddedProcess();
  // A random WebRTC port: other benchmarks on this machine take pid-derived ones.
  await embedded.start({ MSS_AGENT__WEB_RTC_BASE_PORT: String(20000 + Math.floor(Math.random() * 10000)) });
  const rooms = await Promise.all(Array.from({ length: roomCount }, (_, i) => embedded.createRoom(`${roomPrefix}-${i}`)));
  return {
    embedded,
    async tokens(users, round) {
      const tokens = new Map<number, string>();
      for (let i = 0; i < users.length; i += 50) {
        await Promise.all(users.slice(i, i + 50).map(async (u) => tokens.set(u, await embedded.token(rooms[u % roomCount]!, `user-${round}-${u}`))));
      }
      return tokens;
    },
  };
}
