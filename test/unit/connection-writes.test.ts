import assert from 'node:assert/strict';
import { type Server, createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { ClientConnection } from '../../src/gateway/edge/connection.js';
import { unitLogger } from './helpers/room-harness.js';

/**
 * The edge answers many calls per bus read; each frame written on its own costs
 * a syscall. Frames sent in one tick must leave the socket in one write.
 */
let server: Server;
let url: string;
const wss = new WebSocketServer({ noServer: true });
const accepted: { connection: ClientConnection; writes: () => number }[] = [];

before(async () => {
  server = createServer();
  server.on('upgrade', (req, socket, head) => {
    // Writable's implementation hooks: one call per write reaching the kernel.
    const net = socket as Socket & { _write: (...a: unknown[]) => void; _writev?: (...a: unknown[]) => void };
    let writes = 0;
    const write = net._write.bind(net);
    net._write = (...a) => (writes++, write(...a));
    const writev = net._writev?.bind(net);
    if (writev) net._writev = (...a) => (writes++, writev(...a));
    wss.handleUpgrade(req, socket, head, (ws) => accepted.push({ connection: new ClientConnection(ws, unitLogger(), 60_000, socket), writes: () => writes }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => {
  for (const { connection } of accepted) connection.end('GATEWAY_SHUTDOWN', 'test over');
  wss.close();
  server.close();
});

test('frames sent in one tick leave in one write, in order, and later frames are not held back', async () => {
  const client = new WebSocket(url, 'protoo');
  const received: number[] = [];
  client.on('message', (data) => received.push((JSON.parse(data.toString()) as { id: number }).id));
  await new Promise<void>((r) => client.once('open', () => r()));
  while (accepted.length === 0) await new Promise((r) => setImmediate(r));
  const { connection, writes } = accepted[0]!;

  const before = writes();
  for (let id = 1; id <= 50; id++) connection.respond(id, { n: id });
  await new Promise((r) => setImmediate(r));
  assert.ok(writes() - before <= 2, `50 answers of one tick took ${writes() - before} writes`);

  // A frame of a later tick goes out on its own, without waiting for more.
  connection.respond(51, {});
  while (received.length < 51) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(received, Array.from({ length: 51 }, (_, i) => i + 1));
  client.close();
});

test('a held notification leaves with the next frame, in one write and first; alone, within milliseconds', async () => {
  const client = new WebSocket(url, 'protoo');
  const received: unknown[] = [];
  client.on('message', (data) => received.push(JSON.parse(data.toString())));
  await new Promise<void>((r) => client.once('open', () => r()));
  while (accepted.length < 2) await new Promise((r) => setImmediate(r));
  const { connection, writes } = accepted[1]!;
  const labels = () => received.map((m) => (m as { method?: string }).method ?? (m as { id: number }).id);

  // Alone: it waits for a frame, then leaves on its own without waiting for one that never comes.
  let before = writes();
  const sentAt = performance.now();
  connection.notify('mediasoup-version', { version: '3.18.1' }, true);
  await new Promise((r) => setImmediate(r));
  assert.equal(writes() - before, 0, 'the held notification waits for the next frame');
  while (received.length < 1) await new Promise((r) => setTimeout(r, 1));
  assert.ok(performance.now() - sentAt < 100, 'a held notification is not held for long');
  assert.equal(writes() - before, 1);

  // With an answer: the answer does not wait, and takes the notification along in its write.
  before = writes();
  connection.notify('mediasoup-version', { version: '3.18.1' }, true);
  connection.respond(7, { caps: true });
  await new Promise((r) => setImmediate(r));
  assert.equal(writes() - before, 1, 'the answer leaves at once, with the held notification in its write');
  while (received.length < 3) await new Promise((r) => setTimeout(r, 1));
  assert.deepEqual(labels(), ['mediasoup-version', 'mediasoup-version', 7]);
  client.close();
});
