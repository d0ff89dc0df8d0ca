import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';

export interface CountingProxy {
  /** `ws://…` to give clients instead of the gateway's URL. */
  url: string;
  /** WebSocket handshakes seen so far whose request URL contains `fragment` (a token, a peer id). */
  count(fragment: string): number;
  /** Holds new handshakes back (counted, not yet passed on) until the returned function is called. */
  hold(): () => void;
  close(): Promise<void>;
}

/**
 * A TCP relay in front of a gateway that counts every WebSocket handshake a
 * client attempts, whether or not the gateway is there to answer it: how a
 * test sees a client's reconnections from the outside.
 */
export async function startCountingProxy(gatewayUrl: string): Promise<CountingProxy> {
  const target = new URL(gatewayUrl);
  const seen: string[] = [];
  const sockets = new Set<net.Socket>();
  let held: (() => void)[] | undefined;
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (req, client: net.Socket, head: Buffer) => {
    seen.push(req.url ?? '');
    if (held) held.push(() => relay(req, client, head));
    else relay(req, client, head);
  });
  const relay = (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    upstream.on('connect', () => {
      const headers: string[] = [];
      for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(`${req.method} ${req.url} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`);
      upstream.write(head);
      client.pipe(upstream).pipe(client);
    });
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}`,
    count: (fragment) => seen.filter((u) => u.includes(fragment)).length,
    hold: () => {
      const queue: (() => void)[] = [];
      held = queue;
      return () => {
        held = undefined;
        for (const pass of queue) pass();
      };
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
