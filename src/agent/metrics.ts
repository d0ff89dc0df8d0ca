import type { types } from 'mediasoup';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { AgentLoad } from '../core/agent-protocol.js';
import type { MediaRoom } from './media-room.js';

interface RtpTotals {
  packets: number;
  bytes: number;
  nack: number;
  pli: number;
}

/**
 * The agent's metrics. Object counts are read at scrape time; RTP totals are
 * polled from mediasoup's producer/consumer stats at scrape time and added as
 * deltas, so nothing is counted on the media hot path in Node.
 */
export class AgentMetrics {
  readonly transportFailures: Counter<'kind'>;
  readonly producerScore: Histogram;
  readonly consumerScore: Histogram;
  private readonly last = new Map<string, RtpTotals>();

  constructor(
    registry: Registry,
    state: { load(): AgentLoad; draining(): boolean; rooms(): Iterable<MediaRoom> },
  ) {
    const registers = [registry];
    const gauge = (name: string, help: string, read: (l: AgentLoad) => number) =>
      new Gauge({ name, help, registers, collect() { this.set(read(state.load())); } });
    gauge('mss_agent_workers', 'mediasoup workers', (l) => l.workers);
    gauge('mss_agent_routers', 'Routers of the rooms on this agent (one per worker a room uses)', (l) => l.routers);
    gauge('mss_agent_transports', 'Transports', (l) => l.transports);
    gauge('mss_agent_producers', 'Publishers (producers)', (l) => l.producers);
    gauge('mss_agent_consumers', 'Subscribers (consumers)', (l) => l.consumers);
    gauge('mss_agent_peers', 'Peers with media on this agent', (l) => l.peers);
    gauge('mss_agent_worker_cpu', 'Mean worker CPU use (0..1 per worker)', (l) => l.cpu);
    new Gauge({ name: 'mss_agent_draining', help: '1 while the agent drains', registers, collect() { this.set(state.draining() ? 1 : 0); } });
    this.transportFailures = new Counter({
      name: 'mss_agent_transport_failures_total',
      help: 'ICE disconnections and DTLS/SCTP failures of WebRTC transports',
      labelNames: ['kind'],
      registers,
    });
    for (const kind of ['ice', 'dtls', 'sctp']) this.transportFailures.inc({ kind }, 0);
    const scoreBuckets = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    this.producerScore = new Histogram({ name: 'mss_agent_producer_score', help: 'Producer score reports (0..10)', buckets: scoreBuckets, registers });
    this.consumerScore = new Histogram({ name: 'mss_agent_consumer_score', help: 'Consumer score reports (0..10)', buckets: scoreBuckets, registers });

    // RTP totals are polled once per scrape, shared by the four counters below (whose collect awaits it).
    let polled = 0;
    let inFlight: Promise<void> | undefined;
    const last = this.last;
    const poll = (): Promise<void> =>
      (inFlight ??= (async () => {
        const seen = new Set<string>();
        const polls: Promise<void>[] = [];
        for (const room of state.rooms()) {
          for (const [kind, direction, type] of [
            ['producer', 'in', 'inbound-rtp'],
            ['consumer', 'out', 'outbound-rtp'],
          ] as const) {
            for (const [id, entry] of room.objects[kind]) {
              seen.add(id);
              polls.push(
                (entry.object as unknown as types.Producer | types.Consumer)
                  .getStats()
                  .then((stats) => {
                    let now: RtpTotals = { packets: 0, bytes: 0, nack: 0, pli: 0 };
                    for (const s of stats as { type: string; packetCount: number; byteCount: number; nackCount: number; pliCount: number }[]) {
                      if (s.type !== type) continue;
                      now = { packets: now.packets + s.packetCount, bytes: now.bytes + s.byteCount, nack: now.nack + s.nackCount, pli: now.pli + s.pliCount };
                    }
                    const before = last.get(id) ?? { packets: 0, bytes: 0, nack: 0, pli: 0 };
                    last.set(id, now);
                    packets.inc({ direction }, Math.max(0, now.packets - before.packets));
                    bytes.inc({ direction }, Math.max(0, now.bytes - before.bytes));
                    nack.inc({ direction }, Math.max(0, now.nack - before.nack));
                    pli.inc({ direction }, Math.max(0, now.pli - before.pli));
                  })
                  .catch(() => undefined),
              );
            }
          }
        }
        await Promise.all(polls);
        for (const id of last.keys()) if (!seen.has(id)) last.delete(id);
        polled = seen.size;
      })().finally(() => {
        inFlight = undefined;
      }));
    const rtp = (name: string, help: string) =>
      new Counter({ name, help, labelNames: ['direction'], registers, async collect() { await poll(); } });
    const packets = rtp('mss_agent_rtp_packets_total', 'RTP packets received from producers (in) and sent to consumers (out)');
    const bytes = rtp('mss_agent_rtp_bytes_total', 'RTP bytes received from producers (in) and sent to consumers (out)');
    const nack = rtp('mss_agent_nack_total', 'NACKs received for consumers (out) and sent for producers (in)');
    const pli = rtp('mss_agent_pli_total', 'PLIs received for consumers (out) and sent for producers (in)');
    for (const counter of [packets, bytes, nack, pli]) for (const direction of ['in', 'out']) counter.inc({ direction }, 0);
    new Gauge({
      name: 'mss_agent_stats_poll_objects',
      help: 'Producers and consumers polled for RTP stats at the last scrape',
      registers,
      async collect() {
        await poll();
        this.set(polled);
      },
    });
  }
}
