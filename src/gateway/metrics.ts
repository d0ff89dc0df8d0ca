import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** The gateway's metrics; gauges read live state at scrape time, so the hot path only counts events. */
export class GatewayMetrics {
  readonly joinDuration: Histogram;
  readonly placements: Counter<'agent'>;

  constructor(
    registry: Registry,
    state: {
      rooms(): number;
      peers(): number;
      draining(): boolean;
      /** Agents known to this gateway, and those taking new peers now. */
      agents(): { known: number; candidates: number };
      cascade(): { links: number; pipes: number };
      rejected(): { connections: number; connectionsFromOneAddress: number; requests: number; disconnects: number };
    },
  ) {
    const registers = [registry];
    new Gauge({ name: 'mss_gateway_rooms', help: 'Active rooms on this gateway', registers, collect() { this.set(state.rooms()); } });
    new Gauge({ name: 'mss_gateway_peers', help: 'Connected clients (peers) on this gateway', registers, collect() { this.set(state.peers()); } });
    new Gauge({ name: 'mss_gateway_draining', help: '1 while the gateway drains', registers, collect() { this.set(state.draining() ? 1 : 0); } });
    new Gauge({
      name: 'mss_gateway_agents',
      help: 'Media agents this gateway knows (state="known") and can place new peers on (state="candidate")',
      labelNames: ['state'],
      registers,
      collect() {
        const { known, candidates } = state.agents();
        this.set({ state: 'known' }, known);
        this.set({ state: 'candidate' }, candidates);
      },
    });
    new Gauge({
      name: 'mss_gateway_cascade_links',
      help: 'Links (PipeTransport pairs) between agents of this gateway\'s rooms',
      registers,
      collect() { this.set(state.cascade().links); },
    });
    new Gauge({
      name: 'mss_gateway_cascade_pipes',
      help: 'Producers piped to another agent for this gateway\'s rooms',
      registers,
      collect() { this.set(state.cascade().pipes); },
    });
    new Counter({
      name: 'mss_gateway_rate_limited_total',
      help: 'Refusals by the gateway rate limits',
      labelNames: ['kind'],
      registers,
      collect() {
        const r = state.rejected();
        this.reset();
        this.inc({ kind: 'connection' }, r.connections);
        this.inc({ kind: 'connection_per_address' }, r.connectionsFromOneAddress);
        this.inc({ kind: 'request' }, r.requests);
        this.inc({ kind: 'disconnect' }, r.disconnects);
      },
    });
    this.joinDuration = new Histogram({
      name: 'mss_gateway_join_duration_seconds',
      help: 'From WebSocket open to the join response',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.placements = new Counter({
      name: 'mss_gateway_placements_total',
      help: 'Peers placed on media agents by this gateway',
      labelNames: ['agent'],
      registers,
    });
  }
}
