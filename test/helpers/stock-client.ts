import { Peer, WebSocketTransport } from 'protoo-client';
import { waitFor } from './nuve-harness.js';

/**
 * The clients people already run: the real `protoo-client` npm package (4.x,
 * mediasoup-demo's), used the way mediasoup-demo's RoomClient uses it. In
 * Node it opens its WebSockets with its own optional dependency `websocket`
 * (WebSocket-Node), with the `protoo` subprotocol.
 */
export interface StockClient {
  peer: Peer;
  /** Its socket: what a misbehaving client sends goes here, as no answer is awaited (protoo-client would wait ~25 s for each). */
  transport: WebSocketTransport;
  notifications: { method: string; data: any }[];
  /** Requests of the server (newConsumer, newDataConsumer), all accepted as mediasoup-demo does. */
  requests: { method: string; data: any }[];
  /** Times the socket opened: the first connection and every automatic reconnection. */
  opens: number;
  /** The latest join, for a client that joins on every `open` as mediasoup-demo's RoomClient does. */
  joined?: Promise<Joined>;
  /** Resolves when protoo-client gives up for good (its `close` event). */
  closed: Promise<void>;
  isClosed(): boolean;
}

export type Joined = { send: { id: string }; peers: { id: string }[] };

/** SCTP capabilities as mediasoup-demo sends them (its data channels are on by default). */
const sctpCapabilities = { numStreams: { OS: 1024, MIS: 1024 } };

/** What mediasoup-demo's RoomClient does on every `open`: codecs, transports, join. */
async function joinLikeDemo(peer: Peer, name: string): Promise<Joined> {
  const rtpCapabilities = await peer.request('getRouterRtpCapabilities');
  const send = await peer.request('createWebRtcTransport', { producing: true, consuming: false, sctpCapabilities });
  await peer.request('createWebRtcTransport', { producing: false, consuming: true, sctpCapabilities });
  const { peers } = await peer.request('join', { displayName: name, device: { name: 'protoo-client' }, rtpCapabilities, sctpCapabilities });
  return { send, peers };
}

const everyClient: StockClient[] = [];

/**
 * protoo-client settles its pending requests on its own close() only: after the server closed
 * for good they wait out their timeout (~25 s), and their timers keep the test process alive.
 * Test files call this in `after`.
 */
export function settleStockClients(): void {
  for (const { peer } of everyClient.splice(0)) {
    for (const sent of (peer as unknown as { _sents: Map<number, { close(): void }> })._sents.values()) sent.close();
  }
}

/** A stock client; with `joinAs`, it joins the room on every `open` (so again after a reconnection), as mediasoup-demo does. */
export function stockClient(url: string, joinAs?: string): StockClient {
  const transport = new WebSocketTransport(url);
  const peer = new Peer(transport);
  let closedFlag = false;
  const client: StockClient = {
    peer,
    transport,
    notifications: [],
    requests: [],
    opens: 0,
    closed: new Promise((resolve) =>
      peer.on('close', () => {
        closedFlag = true;
        resolve();
      }),
    ),
    isClosed: () => closedFlag,
  };
  peer.on('open', () => {
    client.opens++;
    if (joinAs === undefined) return;
    client.joined = joinLikeDemo(peer, joinAs);
    client.joined.catch(() => undefined);
  });
  peer.on('notification', (n) => client.notifications.push({ method: n.method, data: n.data }));
  // mediasoup-demo accepts the consumers it is offered.
  peer.on('request', (request, accept) => {
    client.requests.push({ method: request.method, data: request.data });
    accept();
  });
  everyClient.push(client);
  return client;
}

/** Resolves once the client's socket is open (protoo-client queues nothing: requests before it fail). */
export function opened(client: StockClient): Promise<void> {
  return new Promise((resolve, reject) => {
    if (client.peer.connected) return resolve();
    client.peer.on('open', () => resolve());
    client.peer.on('close', () => reject(new Error('closed before opening')));
  });
}

/** The join after the client's `opens`-th connection. */
export async function joinedAfter(client: StockClient, opens = 1): Promise<Joined> {
  await waitFor(() => client.opens >= opens && client.joined !== undefined, 5000, `connection ${opens}`);
  return client.joined!;
}

/** The next (or an already received) notification of `method`, taken off the list. */
export async function waitForNotification(client: StockClient, method: string, timeoutMs = 3000): Promise<any> {
  await waitFor(() => client.notifications.some((n) => n.method === method), timeoutMs, `a ${method} notification`);
  const i = client.notifications.findIndex((n) => n.method === method);
  return client.notifications.splice(i, 1)[0]!.data;
}
