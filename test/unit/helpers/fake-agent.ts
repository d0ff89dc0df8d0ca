/**
 * A media agent without mediasoup for unit tests: it answers `agent.<id>.rpc`
 * on an in-process bus with the contract of src/core/agent-protocol.ts
 * (requests validated by its schemas, answers of its result types) and keeps
 * just enough bookkeeping to publish the events a real agent would (a closed
 * peer's consumers and producers, a piped producer's consumers on unpipe).
 */
import {
  type AgentEvent,
  type AgentMethod,
  type AgentResults,
  agentRequestSchemas,
  agentRpcSchema,
  agentSubjects,
} from '../../../src/core/agent-protocol.js';
import type { Bus, Subscription } from '../../../src/core/bus/bus.js';
import { AppError } from '../../../src/core/errors.js';

export interface Call {
  method: AgentMethod;
  data: Record<string, unknown>;
}

/** Replaces the fake's answer to one method: return a value, throw, or wait. */
type Override = (data: Record<string, unknown>) => unknown;

/** Requests that need the room's router on this agent, as on the real one. */
const WITHOUT_ROUTER: ReadonlySet<AgentMethod> = new Set<AgentMethod>([
  'ensureRouter',
  'closeRouter',
  'closePeer',
  'closePipeTransport',
  'unpipe',
  'unpipeData',
  'probeClient',
  'dump',
]);

export class FakeAgent {
  readonly calls: Call[] = [];
  /** Open routers: `${gatewayId}|${roomId}` → epoch. */
  readonly routers = new Map<string, string>();
  readonly producers = new Map<string, { peerId: string; kind: 'audio' | 'video' }>();
  readonly consumers = new Map<string, { peerId: string; producerId: string }>();
  /** Links to other agents (PipeTransports), by remote agent id. */
  readonly links = new Set<string>();
  /** Producers piped in from another agent, by producer id. */
  readonly pipedIn = new Map<string, { from: string; kind: 'audio' | 'video' }>();
  /** Local producers sent over a link: `${remoteAgentId}|${producerId}`. */
  readonly pipedOut = new Set<string>();
  /** Data producers piped in (id → the agent they come from) and sent out (`${remoteAgentId}|${dataProducerId}`). */
  readonly dataPipedIn = new Map<string, string>();
  readonly dataPipedOut = new Set<string>();
  private readonly overrides = new Map<AgentMethod, Override>();
  private readonly subscription: Subscription;
  private serial = 0;
  private gatewayId = '';
  private roomId = '';

  constructor(
    private readonly bus: Bus,
    readonly id: string,
  ) {
    this.subscription = bus.respond(agentSubjects.rpc(id), (payload) => this.handle(payload));
  }

  /** The calls of one method, in order. */
  callsOf(method: AgentMethod): Record<string, unknown>[] {
    return this.calls.filter((c) => c.method === method).map((c) => c.data);
  }

  override(method: AgentMethod, answer: Override | undefined): void {
    if (answer) this.overrides.set(method, answer);
    else this.overrides.delete(method);
  }

  /** The agent stops answering at all (process gone). */
  stop(): void {
    this.subscription.unsubscribe();
  }

  /** Publishes an event to the room's gateway, as the real agent does. */
  emit(event: AgentEvent): void {
    this.bus.publish(agentSubjects.events(this.gatewayId), { ...event, agentId: this.id });
  }

  /** Its routers are gone without a word (restart under the same id): it answers ROOM_NOT_FOUND from now on. */
  forgetRouters(): void {
    this.routers.clear();
  }

  private async handle(payload: unknown): Promise<unknown> {
    const envelope = agentRpcSchema.parse(payload);
    if (!Object.hasOwn(agentRequestSchemas, envelope.method)) throw new AppError('UNKNOWN_METHOD', envelope.method);
    const method = envelope.method as AgentMethod;
    const parsed = agentRequestSchemas[method].safeParse(envelope.data);
    if (!parsed.success) throw new AppError('INVALID_REQUEST', `${method}: ${parsed.error.message}`);
    const data = parsed.data as Record<string, unknown>;
    this.calls.push({ method, data });
    if (typeof data.gatewayId === 'string') this.gatewayId = data.gatewayId;
    if (typeof data.roomId === 'string') this.roomId = data.roomId;
    const key = `${String(data.gatewayId)}|${String(data.roomId)}`;
    if (!WITHOUT_ROUTER.has(method) && data.roomId !== undefined && !this.routers.has(key)) {
      throw new AppError('ROOM_NOT_FOUND', `room ${String(data.roomId)} has no router on ${this.id}`);
    }
    const override = this.overrides.get(method);
    if (override) return override(data);
    return this.answer(method, data, key);
  }

  private next(kind: string): string {
    return `${this.id}-${kind}-${++this.serial}`;
  }

  private answer(method: AgentMethod, d: Record<string, unknown>, key: string): unknown {
    const peerId = String(d.peerId);
    switch (method) {
      case 'ensureRouter':
        this.routers.set(key, String(d.epoch));
        return { rtpCapabilities: { codecs: [] } } satisfies AgentResults['ensureRouter'];
      case 'closeRouter':
        if (this.routers.get(key) === d.epoch) this.routers.delete(key);
        return null;
      case 'closePeer':
        this.closePeer(peerId);
        return null;
      case 'createWebRtcTransport':
        return { id: this.next('transport'), iceParameters: {}, iceCandidates: [], dtlsParameters: {} } satisfies AgentResults['createWebRtcTransport'];
      case 'createPlainTransport':
        return { id: this.next('plain'), ip: '127.0.0.1', port: 40000 } satisfies AgentResults['createPlainTransport'];
      case 'produce': {
        const id = this.next('producer');
        this.producers.set(id, { peerId, kind: d.kind === 'video' ? 'video' : 'audio' });
        return { id } satisfies AgentResults['produce'];
      }
      case 'closeProducer':
        this.closeProducer(String(d.producerId));
        return null;
      case 'consume': {
        const producerId = String(d.producerId);
        const kind = this.producers.get(producerId)?.kind ?? this.pipedIn.get(producerId)?.kind;
        if (kind === undefined) throw new AppError('PRODUCER_NOT_FOUND', `producer ${producerId} not found`);
        const id = this.next('consumer');
        this.consumers.set(id, { peerId, producerId });
        return { id, producerId, kind, rtpParameters: {}, type: 'simple', producerPaused: false, appData: {} } satisfies AgentResults['consume'];
      }
      case 'produceData':
        return { id: this.next('dataproducer'), label: '', protocol: '' } satisfies AgentResults['produceData'];
      case 'consumeData':
        return {
          id: this.next('dataconsumer'),
          dataProducerId: String(d.dataProducerId),
          sctpStreamParameters: {},
          label: '',
          protocol: '',
          appData: {},
        } satisfies AgentResults['consumeData'];
      case 'restartIce':
        return { iceParameters: {} } satisfies AgentResults['restartIce'];
      case 'getTransportStats':
      case 'getProducerStats':
      case 'getConsumerStats':
      case 'getDataProducerStats':
      case 'getDataConsumerStats':
        return [];
      case 'createPipeTransport':
        return { ip: '127.0.0.1', port: 50000 + this.serial++ } satisfies AgentResults['createPipeTransport'];
      case 'connectPipeTransport':
        this.links.add(String(d.remoteAgentId));
        return null;
      case 'closePipeTransport':
        this.links.delete(String(d.remoteAgentId));
        return null;
      case 'pipeConsume': {
        if (!this.links.has(String(d.remoteAgentId))) throw new AppError('LINK_NOT_FOUND', 'no link');
        const producer = this.producers.get(String(d.producerId));
        if (!producer) throw new AppError('PRODUCER_NOT_FOUND', `producer ${String(d.producerId)} not found`);
        this.pipedOut.add(`${String(d.remoteAgentId)}|${String(d.producerId)}`);
        return { kind: producer.kind, rtpParameters: {}, paused: false, appData: {} } satisfies AgentResults['pipeConsume'];
      }
      case 'pipeProduce':
        if (!this.links.has(String(d.remoteAgentId))) throw new AppError('LINK_NOT_FOUND', 'no link');
        this.pipedIn.set(String(d.producerId), { from: String(d.remoteAgentId), kind: d.kind === 'video' ? 'video' : 'audio' });
        return null;
      case 'unpipe': {
        const producerId = String(d.producerId);
        this.pipedOut.delete(`${String(d.remoteAgentId)}|${producerId}`);
        if (this.pipedIn.get(producerId)?.from === d.remoteAgentId) {
          this.pipedIn.delete(producerId);
          this.closeConsumersOf(producerId);
        }
        return null;
      }
      case 'pipeConsumeData':
        if (!this.links.has(String(d.remoteAgentId))) throw new AppError('LINK_NOT_FOUND', 'no link');
        this.dataPipedOut.add(`${String(d.remoteAgentId)}|${String(d.dataProducerId)}`);
        return {
          sctpStreamParameters: { streamId: this.dataPipedOut.size },
          label: 'chat',
          protocol: '',
          appData: {},
        } satisfies AgentResults['pipeConsumeData'];
      case 'pipeProduceData':
        if (!this.links.has(String(d.remoteAgentId))) throw new AppError('LINK_NOT_FOUND', 'no link');
        this.dataPipedIn.set(String(d.dataProducerId), String(d.remoteAgentId));
        return null;
      case 'unpipeData':
        this.dataPipedOut.delete(`${String(d.remoteAgentId)}|${String(d.dataProducerId)}`);
        if (this.dataPipedIn.get(String(d.dataProducerId)) === d.remoteAgentId) this.dataPipedIn.delete(String(d.dataProducerId));
        return null;
      default:
        return null;
    }
  }

  /** The peer's transports close: its consumers (transportclose) and producers with everything consuming them. */
  private closePeer(peerId: string): void {
    for (const [id, c] of [...this.consumers]) {
      if (c.peerId !== peerId) continue;
      this.consumers.delete(id);
      this.emit({ type: 'consumerClosed', roomId: this.roomId, peerId, consumerId: id });
    }
    for (const [id, p] of [...this.producers]) if (p.peerId === peerId) this.closeProducer(id);
  }

  private closeProducer(producerId: string): void {
    const producer = this.producers.get(producerId);
    if (!producer) return;
    this.producers.delete(producerId);
    for (const out of [...this.pipedOut]) if (out.endsWith(`|${producerId}`)) this.pipedOut.delete(out);
    this.closeConsumersOf(producerId);
    this.emit({ type: 'producerClosed', roomId: this.roomId, peerId: producer.peerId, producerId });
  }

  private closeConsumersOf(producerId: string): void {
    for (const [id, c] of [...this.consumers]) {
      if (c.producerId !== producerId) continue;
      this.consumers.delete(id);
      this.emit({ type: 'consumerClosed', roomId: this.roomId, peerId: c.peerId, consumerId: id });
    }
  }
}
