import { type Server, createServer } from 'node:http';
import { connect } from 'node:net';

/**
 * Round-trip time to `address` without raw sockets (no ICMP): a TCP connect
 * costs one round trip whether the host accepts (SYN-ACK) or refuses (RST).
 * Two attempts, the lower counts (the first may include ARP or a cold path).
 * Null when the host does not answer in time (firewall, NAT dropping SYNs).
 */
export async function measureTcpRtt(address: string, port: number, timeoutMs: number): Promise<number | null> {
  const deadline = performance.now() + timeoutMs;
  let best: number | null = null;
  for (let attempt = 0; attempt < 2; attempt++) {
    const left = deadline - performance.now();
    if (left <= 0) break;
    const rtt = await connectOnce(address, port, left);
    if (rtt === null) break;
    best = best === null ? rtt : Math.min(best, rtt);
  }
  return best === null ? null : Math.round(best * 100) / 100;
}

function connectOnce(address: string, port: number, timeoutMs: number): Promise<number | null> {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = connect({ host: address, port });
    const finish = (rtt: number | null) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(rtt);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    socket.once('connect', () => finish(performance.now() - started));
    socket.once('error', (err: NodeJS.ErrnoException) => finish(err.code === 'ECONNREFUSED' ? performance.now() - started : null));
  });
}

/**
 * The endpoint clients time round trips against before a TTL-BEST room
 * places them: `GET /probe` answers 204 at once, readable cross-origin so
 * browser pages can measure it with fetch. Nothing else is served here.
 */
export async function startProbeServer(host: string, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    const headers = {
      'access-control-allow-origin': '*',
      'timing-allow-origin': '*',
      'cache-control': 'no-store',
    };
    if (req.url?.startsWith('/probe') && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(204, headers).end();
    } else {
      res.writeHead(404, headers).end();
    }
  });
  server.keepAliveTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
