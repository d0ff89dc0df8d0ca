/**
 * A gateway's Room on an in-process bus with fake agents (fake-agent.ts) and
 * fake client sessions: the room logic end to end in milliseconds, without
 * mediasoup, WebSockets or Nuve.
 */
import { agentEventSchema, agentSubjects } from '../../../src/core/agent-protocol.js';
import { MemoryBus } from '../../../src/core/bus/memory-bus.js';
import { type Logger, createLogger } from '../../../src/core/logger.js';
import type { EaPolicy } from '../../../src/core/subjects.js';
import { Peer, type PeerChannel } from '../../../src/gateway/peer.js';
import { Room, type RoomOptions } from '../../../src/gateway/room.js';
import { FakeAgent } from './fake-agent.js';

export const GATEWAY_ID = 'gw-unit';

/** A client session: what it was told, what it was asked, and how it ended. */
export class FakeConnection implements PeerChannel {
  readonly notifications: { method: string; data: unknown }[] = [];
  readonly requests: { method: string; data: unknown }[] = [];
  ended?: { errorName: string; reason: string };
  /** How the client answers the gateway's requests (newConsumer, newDataConsumer). */
  answer: (method: string, data: unknown) => Promise<unknown> = async () => ({});

  notify(method: string, data: unknown): void {
    this.notifications.push({ method, data });
  }

  request(method: string, data: unknown): Promise<unknown> {
    this.requests.push({ method, data });
    return this.answer(method, data);
  }

  end(errorName: string, reason: string): void {
    this.ended = { errorName, reason };
  }

  notified(method: string): unknown[] {
    return this.notifications.filter((n) => n.method === method).map((n) => n.data);
  }

  asked(method: string): unknown[] {
    return this.requests.filter((r) => r.method === method).map((r) => r.data);
  }
}

export interface HarnessOptions {
  agents?: string[];
  policy?: EaPolicy;
  /** The gateway's placement: the agents for a peer, best first (default: the first agent). */
  place?: RoomOptions['place'];
  fallbackAfterMs?: number;
  agentTimeoutMs?: number;
}

export interface Harness {
  bus: MemoryBus;
  room: Room;
  agents: Map<string, FakeAgent>;
  agent(id: string): FakeAgent;
  /** Peers whose media was lost, as the gateway's `mediaLost` hears of them. */
  mediaLost: { peerId: string; reason: string }[];
  /** A peer with a fake session, added to the room (not joined). */
  addPeer(id: string, role?: 'presenter' | 'viewer'): { peer: Peer; conn: FakeConnection };
  close(): Promise<void>;
}

let logger: Logger | undefined;

/** Silent unless TEST_LOG_LEVEL says otherwise. */
export function unitLogger(): Logger {
  logger ??= createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', format: 'json' });
  return logger;
}

export function roomHarness(options: HarnessOptions = {}): Harness {
  const logger = unitLogger();
  const bus = new MemoryBus(logger, 1000);
  const ids = options.agents ?? ['agent-a'];
  const agents = new Map(ids.map((id) => [id, new FakeAgent(bus, id)]));
  const mediaLost: Harness['mediaLost'] = [];
  const policy = options.policy ?? 'ROOM-BEST';
  const room = new Room({
    id: 'room-unit',
    serviceId: 'service-unit',
    policy,
    gatewayId: GATEWAY_ID,
    bus,
    logger,
    agentTimeoutMs: options.agentTimeoutMs ?? 500,
    enableSrtp: false,
    place: options.place ?? (async () => [ids[0]!]),
    mediaLost: (peer, reason) => mediaLost.push({ peerId: peer.id, reason }),
    onPlaced: () => undefined,
    fallbackAfterMs: options.fallbackAfterMs ?? 100,
    probes: () => ({ probes: [], timeoutMs: 0 }),
    peerLimits: {
      maxTransportsPerPeer: 4,
      maxProducersPerPeer: 16,
      maxConsumersPerPeer: 1000,
      maxDataProducersPerPeer: 8,
      maxDataConsumersPerPeer: 500,
    },
  });
  // As the gateway does: the agents' media events reach the room they name.
  bus.subscribe(agentSubjects.events(GATEWAY_ID), (payload) => {
    const parsed = agentEventSchema.safeParse(payload);
    if (parsed.success && parsed.data.roomId === room.id) room.onAgentEvent(parsed.data);
  });
  return {
    bus,
    room,
    agents,
    mediaLost,
    agent: (id) => agents.get(id)!,
    addPeer(id, role = 'presenter') {
      const conn = new FakeConnection();
      const peer = new Peer(
        id,
        { tokenId: `t-${id}`, serviceId: 'service-unit', roomId: room.id, roomName: 'unit', userName: id, role, eapolicy: policy },
        conn,
      );
      room.addPeer(peer);
      return { peer, conn };
    },
    close: () => bus.close(),
  };
}

const OPUS = { mimeType: 'audio/opus', payloadType: 100, clockRate: 48000, channels: 2 };
const VP8 = { mimeType: 'video/VP8', payloadType: 101, clockRate: 90000 };

/** The mediasoup-demo client flow: send and receive transports, join, then produce `kinds`. */
export async function joinWithMedia(
  h: Harness,
  id: string,
  kinds: ('audio' | 'video')[] = [],
  role: 'presenter' | 'viewer' = 'presenter',
): Promise<{ peer: Peer; conn: FakeConnection; producerIds: string[] }> {
  const { peer, conn } = h.addPeer(id, role);
  const send = (await h.room.handle(peer, 'createWebRtcTransport', { producing: true, consuming: false })) as { id: string };
  await h.room.handle(peer, 'createWebRtcTransport', { producing: false, consuming: true });
  await h.room.handle(peer, 'join', { displayName: id, rtpCapabilities: { codecs: [OPUS, VP8] } });
  const producerIds: string[] = [];
  for (const kind of kinds) {
    const rtpParameters = { codecs: [kind === 'audio' ? OPUS : VP8] };
    const { id: producerId } = (await h.room.handle(peer, 'produce', { transportId: send.id, kind, rtpParameters })) as { id: string };
    producerIds.push(producerId);
  }
  return { peer, conn, producerIds };
}

/** Waits (polling each turn of the event loop, at most `ms`) until `check` holds. */
export async function until(check: () => boolean, what: string, ms = 1000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Lets every pending bus message and promise settle. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 1));
}
