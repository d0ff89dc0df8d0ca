import { performance } from 'node:perf_hooks';
import type { ConfigInput } from '../../src/core/config.js';
import { gatewayCall, openAudioBroadcaster } from './broadcaster.js';
import { AUDIO_PT, AUDIO_SSRC } from './ffmpeg.js';
import { type EmbeddedPlatform, startEmbedded } from './platform.js';
import { type RtpSender, type RtpSink, startRtpSender, startRtpSink } from './rtp-load.js';

/** One plain-RTP listener: a broadcaster consuming the room's audio into a sink socket. */
export interface Listener {
  id: string;
  secret: string;
  /** The SSRC of its consumer's RTP: what the sink counts it by. */
  ssrc: number;
  /** POST /broadcasters answered (token consumed, placed, in the room), ms. */
  joinMs: number;
  /** Join, transport, connect and consume all answered, ms. */
  readyMs: number;
  /** Each call of its setup, ms: where a slow setup waited. */
  calls: { token: number; join: number; transport: number; connect: number; consume: number };
}

export interface LargeRoom {
  platform: EmbeddedPlatform;
  roomId: string;
  producerId: string;
  /** The publisher's RTP: benches pause it while they measure something else. */
  sender: RtpSender;
  listeners: Listener[];
  /** Adds `n` listeners, `concurrency` setting up at once; rejects on the first refusal. */
  addListeners(n: number, concurrency?: number): Promise<Listener[]>;
  /** Per listener, the share of the packets sent during a `windowMs` window that reached it. */
  delivery(windowMs: number): Promise<Map<Listener, number>>;
  /** Deletes every broadcaster (the room closes with its last one). */
  leave(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A large-audience room on the embedded platform: one audio publisher (a Node plain-RTP sender
 * through the broadcaster API) and plain-RTP listeners added through the same API, each with its
 * own token and broadcaster, as the test and bench/large-room.ts drive it.
 */
export async function startLargeRoom(o: {
  config: ConfigInput;
  /** Listeners join with `listener: true` (not announced to the room). */
  quietListeners: boolean;
  /** The RTP sink's sockets, the listeners spread over them. */
  sinkSockets: number;
}): Promise<LargeRoom> {
  const platform = await startEmbedded(o.config);
  const http = platform.gatewayUrl.replace(/^ws/, 'http');
  const call = (method: string, path: string, body?: unknown, secret?: string) => gatewayCall(http, method, path, body, secret);
  const roomId = await platform.createRoom('large-room');
  const { source, input, producer } = await openAudioBroadcaster(http, await platform.token(roomId, 'speaker'), { displayName: 'speaker' });
  const sender: RtpSender = await startRtpSender({ ip: input.ip, port: input.port, ssrc: AUDIO_SSRC, payloadType: AUDIO_PT });
  const sink: RtpSink = await startRtpSink(o.sinkSockets);
  const listeners: Listener[] = [];

  async function addOne(index: number): Promise<Listener> {
    let at = performance.now();
    const lap = () => {
      const now = performance.now();
      const ms = now - at;
      at = now;
      return ms;
    };
    const token = await platform.token(roomId, `listener-${index}`);
    const tokenMs = lap();
    const bc = await call('POST', '/broadcasters', { token, displayName: `listener-${index}`, listener: o.quietListeners });
    const joinMs = lap();
    const out = await call('POST', `/broadcasters/${bc.id}/transports`, { comedia: false, rtcpMux: true }, bc.secret);
    const transportMs = lap();
    const port = sink.ports[index % sink.ports.length]!;
    await call('POST', `/broadcasters/${bc.id}/transports/${out.id}/connect`, { ip: '127.0.0.1', port }, bc.secret);
    const connectMs = lap();
    const consumer = await call('POST', `/broadcasters/${bc.id}/transports/${out.id}/consume`, { producerId: producer.id }, bc.secret);
    const consumeMs = lap();
    return {
      id: bc.id,
      secret: bc.secret,
      ssrc: consumer.rtpParameters.encodings[0].ssrc,
      joinMs,
      readyMs: joinMs + transportMs + connectMs + consumeMs,
      calls: { token: tokenMs, join: joinMs, transport: transportMs, connect: connectMs, consume: consumeMs },
    };
  }

  return {
    platform,
    roomId,
    producerId: producer.id,
    sender,
    listeners,
    async addListeners(n, concurrency = 8) {
      const added: Listener[] = [];
      let next = listeners.length;
      const end = listeners.length + n;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < end) {
            const listener = await addOne(next++);
            listeners.push(listener);
            added.push(listener);
          }
        }),
      );
      return added;
    },
    delivery: (windowMs) => measureDelivery(sender, sink, listeners, windowMs),
    async leave() {
      const all = [...listeners.splice(0), { id: source.id, secret: source.secret }];
      for (let i = 0; i < all.length; i += 50) {
        await Promise.all(all.slice(i, i + 50).map((l) => call('DELETE', `/broadcasters/${l.id}`, undefined, l.secret)));
      }
    },
    async close() {
      await sender.close();
      await sink.close();
      await platform.close();
    },
  };
}

/**
 * Per listener (by its SSRC), the share of its stream's packets that reached the sink during a
 * `windowMs` window: received / expected by sequence numbers. A stream that stalled during the
 * window counts against what the sender sent meanwhile (less 10 % for the two clocks' skew), and
 * a listener that received nothing counts 0.
 */
export async function measureDelivery<L extends { ssrc: number }>(
  sender: RtpSender,
  sink: RtpSink,
  listeners: L[],
  windowMs: number,
): Promise<Map<L, number>> {
  const sentBefore = await sender.sent();
  await sink.reset();
  await new Promise((r) => setTimeout(r, windowMs));
  const streams = await sink.streams();
  const sent = (await sender.sent()) - sentBefore;
  return new Map(
    listeners.map((l) => {
      const s = streams.get(l.ssrc);
      return [l, s ? s.received / Math.max(s.expected, 0.9 * sent) : 0];
    }),
  );
}

/** The q-quantile (0..1) of `values`. */
export function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
}
