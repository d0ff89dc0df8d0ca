/**
 * The baseline of bench/join: a minimal server in the style of mediasoup-demo's
 * (server.js + lib/Room.js), without TLS, on protoo-server from bench/peers.
 * One mediasoup worker with one WebRtcServer, a router per room (with the
 * demo's audio-level and active-speaker observers), and the three handlers a
 * join takes, with the demo's semantics: `join` answers the joined peers and
 * tells the others `newPeer`; a room closes with its last peer.
 *
 * Run as its own OS process (bench/join starts it); prints `listening <port>`.
 *   node --import tsx bench/protoo-baseline.ts <webRtcPort>
 *
 * Clients connect as to mediasoup-demo, except that roomId and peerId travel in
 * the `token` query parameter (`<roomId>:<peerId>`), so that bench/join-load's
 * client connects to either server unchanged.
 */
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { mediaCodecs } from '../src/agent/media-codecs.js';

const HERE = dirname(fileURLToPath(import.meta.url));

// ---- protoo-server, loaded from bench/peers (its types are not in the project's tree) ----------
interface ProtooRequest {
  method: string;
  data: any;
}
interface ProtooPeer {
  id: string;
  data: Record<string, any>;
  closed: boolean;
  on(event: 'request', fn: (req: ProtooRequest, accept: (data?: unknown) => void, reject: (code: number, reason: string) => void) => void): void;
  on(event: 'close', fn: () => void): void;
  notify(method: string, data: unknown): Promise<void>;
  close(): void;
}
interface ProtooRoom {
  peers: ProtooPeer[];
  hasPeer(id: string): boolean;
  getPeer(id: string): ProtooPeer | undefined;
  createPeer(id: string, transport: unknown): ProtooPeer;
  close(): void;
}
interface ProtooServer {
  WebSocketServer: new (
    httpServer: unknown,
    options: Record<string, unknown>,
  ) => {
    on(
      event: 'connectionrequest',
      fn: (info: { request: { url: string } }, accept: () => unknown, reject: (code?: number, reason?: string) => void) => void,
    ): void;
  };
  Room: new () => ProtooRoom;
}
function loadProtoo(): ProtooServer {
  const require = createRequire(join(HERE, 'peers', 'package.json'));
  try {
    return require('protoo-server') as ProtooServer;
  } catch (err) {
    throw new Error(`protoo-server is not installed in bench/peers: run \`npm ci --prefix bench/peers\` (${err instanceof Error ? err.message : String(err)})`);
  }
}

const protoo = loadProtoo();
const webRtcPort = Number(process.argv[2] ?? 47100);

const worker = await mediasoup.createWorker({ logLevel: 'warn' });
worker.on('died', () => process.exit(1));
const webRtcServer = await worker.createWebRtcServer({
  listenInfos: [
    { protocol: 'udp', ip: '127.0.0.1', port: webRtcPort },
    { protocol: 'tcp', ip: '127.0.0.1', port: webRtcPort },
  ],
});

/** A room as mediasoup-demo's Room: a protoo room, its router and observers. */
class Room {
  readonly protooRoom = new protoo.Room();
  private closed = false;

  private constructor(
    readonly id: string,
    private readonly router: types.Router,
    private readonly onClose: () => void,
  ) {}

  static async create(id: string, onClose: () => void): Promise<Room> {
    const router = await worker.createRouter({ mediaCodecs });
    // The demo creates both observers with every room.
    await router.createAudioLevelObserver({ maxEntries: 1, threshold: -80, interval: 800 });
    await router.createActiveSpeakerObserver();
    return new Room(id, router, onClose);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.protooRoom.close();
    this.router.close();
    this.onClose();
  }

  handleConnection(peerId: string, transport: unknown): void {
    // The demo: a second connection with the same peer id replaces the first.
    this.protooRoom.getPeer(peerId)?.close();
    const peer = this.protooRoom.createPeer(peerId, transport);
    // As the demo does at connection (the platform tells it once the peer is placed).
    peer.notify('mediasoup-version', { version: mediasoup.version }).catch(() => {});
    Object.assign(peer.data, { joined: false, transports: new Map<string, types.WebRtcTransport>(), producers: new Map() });
    peer.on('request', (request, accept, reject) => {
      this.handleRequest(peer, request, accept).catch((error: Error) => reject(500, String(error)));
    });
    peer.on('close', () => {
      if (this.closed) return;
      if (peer.data.joined) {
        for (const other of this.joinedPeers(peer)) other.notify('peerClosed', { peerId: peer.id }).catch(() => {});
      }
      for (const t of peer.data.transports.values()) t.close();
      if (this.protooRoom.peers.length === 0) this.close();
    });
  }

  private joinedPeers(exclude?: ProtooPeer): ProtooPeer[] {
    return this.protooRoom.peers.filter((p) => p.data.joined && p !== exclude);
  }

  private async handleRequest(peer: ProtooPeer, request: ProtooRequest, accept: (data?: unknown) => void): Promise<void> {
    switch (request.method) {
      case 'getRouterRtpCapabilities':
        accept(this.router.rtpCapabilities);
        return;
      case 'join': {
        if (peer.data.joined) throw new Error('Peer already joined');
        const { displayName, device, rtpCapabilities, sctpCapabilities } = request.data;
        Object.assign(peer.data, { displayName, device, rtpCapabilities, sctpCapabilities });
        const others = this.joinedPeers(peer);
        accept({ peers: others.map((p) => ({ id: p.id, displayName: p.data.displayName, device: p.data.device })) });
        peer.data.joined = true;
        // No producers in this bench: the demo's consumer creation for others' producers is a no-op here.
        for (const other of others) {
          other.notify('newPeer', { id: peer.id, displayName, device }).catch(() => {});
        }
        return;
      }
      case 'createWebRtcTransport': {
        const { forceTcp, producing, consuming, sctpCapabilities } = request.data;
        const transport = await this.router.createWebRtcTransport({
          webRtcServer,
          enableUdp: !forceTcp,
          enableTcp: true,
          preferUdp: true,
          iceConsentTimeout: 20,
          enableSctp: Boolean(sctpCapabilities),
          numSctpStreams: sctpCapabilities?.numStreams,
          initialAvailableOutgoingBitrate: 1_000_000,
          maxSctpMessageSize: 262_144,
          appData: { producing, consuming },
        });
        transport.on('icestatechange', () => {});
        transport.on('dtlsstatechange', () => {});
        transport.on('sctpstatechange', () => {});
        await transport.enableTraceEvent(['bwe']);
        transport.on('trace', (trace) => {
          if (trace.type === 'bwe' && trace.direction === 'out') peer.notify('downlinkBwe', trace.info).catch(() => {});
        });
        peer.data.transports.set(transport.id, transport);
        accept({
          id: transport.id,
          iceParameters: transport.iceParameters,
          iceCandidates: transport.iceCandidates,
          dtlsParameters: transport.dtlsParameters,
          sctpParameters: transport.sctpParameters,
        });
        // The demo's config sets maxIncomingBitrate, after answering.
        await transport.setMaxIncomingBitrate(1_500_000).catch(() => {});
        return;
      }
      default:
        throw new Error(`unknown request.method "${request.method}"`);
    }
  }
}

const rooms = new Map<string, Promise<Room>>();
/** The demo's getOrCreateRoom, serialized per room id by keeping the creation's promise. */
function getOrCreateRoom(roomId: string): Promise<Room> {
  let room = rooms.get(roomId);
  if (!room) {
    room = Room.create(roomId, () => rooms.delete(roomId));
    rooms.set(roomId, room);
  }
  return room;
}

const httpServer = createServer();
const wss = new protoo.WebSocketServer(httpServer, { maxReceivedFrameSize: 960000, maxReceivedMessageSize: 960000, fragmentOutgoingMessages: true, fragmentationThreshold: 960000 });
wss.on('connectionrequest', (info, accept, reject) => {
  const token = new URL(info.request.url, 'http://x').searchParams.get('token') ?? '';
  const [roomId, peerId] = token.split(':');
  if (!roomId || !peerId) {
    reject(400, 'Connection request without roomId and/or peerId');
    return;
  }
  getOrCreateRoom(roomId)
    .then((room) => room.handleConnection(peerId, accept()))
    .catch((error) => reject(500, String(error)));
});
httpServer.listen(0, '127.0.0.1', () => {
  const address = httpServer.address();
  console.log(`listening ${typeof address === 'object' && address ? address.port : 0}`);
});
process.on('SIGTERM', () => {
  worker.close();
  process.exit(0);
});
