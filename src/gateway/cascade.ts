import type { AgentMethod, AgentResults, RoomRequest } from '../core/agent-protocol.js';
import type { Logger } from '../core/logger.js';

/** Sends one request to one agent (the room's bus call, with its timeout and error mapping). */
export type AgentCall = <M extends AgentMethod>(agentId: string, method: M, data: RoomRequest<M>) => Promise<AgentResults[M]>;

/**
 * Something opened on first use and closed when its last user is gone, one
 * operation at a time per key: an open that follows a close of the same key
 * waits for the close, so an unpipe racing a new consumer never leaves the
 * agents half torn down.
 */
class RefCounted<K> {
  private readonly entries = new Map<K, { refs: number; opened: Promise<void> }>();
  private readonly closing = new Map<K, Promise<void>>();

  constructor(
    private readonly open: (key: K) => Promise<void>,
    private readonly close: (key: K) => Promise<void>,
    private readonly logger: Logger,
  ) {}

  async acquire(key: K): Promise<void> {
    let entry = this.entries.get(key);
    if (!entry) {
      const previous = this.closing.get(key) ?? Promise.resolve();
      const opened = previous.then(() => this.open(key));
      const created = { refs: 0, opened };
      entry = created;
      this.entries.set(key, created);
      // A failed open is forgotten, so the next user tries again.
      opened.catch(() => this.entries.get(key) === created && this.entries.delete(key));
    }
    entry.refs++;
    try {
      await entry.opened;
    } catch (err) {
      entry.refs--;
      throw err;
    }
  }

  release(key: K): void {
    const entry = this.entries.get(key);
    if (!entry || --entry.refs > 0) return;
    this.entries.delete(key);
    const closing: Promise<void> = entry.opened
      .then(
        () => this.close(key),
        () => undefined,
      )
      .catch((err: unknown) => this.logger.debug({ err, key }, 'close failed'))
      .finally(() => this.closing.get(key) === closing && this.closing.delete(key));
    this.closing.set(key, closing);
  }

  /** Drops keys without closing them (their agent is gone, and with it what they held). */
  forget(match: (key: K) => boolean): K[] {
    const dropped = [...this.entries.keys()].filter(match);
    for (const key of dropped) this.entries.delete(key);
    return dropped;
  }

  keys(): K[] {
    return [...this.entries.keys()];
  }
}

/** What a pipe carries: a producer's RTP, or a data producer's messages over the link's SCTP association. */
type PipeKind = 'media' | 'data';

interface PipeKey {
  kind: PipeKind;
  /** The producer's or data producer's id. */
  producerId: string;
  from: string;
  to: string;
}

// Keys join ids with a newline, which no id contains (agent ids come from config, the rest are UUIDs).
const pairOf = (a: string, b: string): string => (a < b ? `${a}\n${b}` : `${b}\n${a}`);
const pipeKeyOf = (p: PipeKey): string => `${p.kind}\n${p.producerId}\n${p.from}\n${p.to}`;
const parsePipeKey = (key: string): PipeKey => {
  const [kind, producerId, from, to] = key.split('\n') as [PipeKind, string, string, string];
  return { kind, producerId, from, to };
};

/**
 * Cascade of one room across agents. Each pair of agents carrying the room
 * is linked by a PipeTransport at each end (SRTP unless disabled, SCTP for
 * data); a producer or data producer is sent over a link only while at
 * least one consumer (data consumer) on the far agent needs it, and a link
 * lives only while some pipe crosses it. The gateway is the one
 * orchestrator of the room, so these counts are exact.
 */
export class Cascade {
  /** Links by agent pair; one reference per pipe crossing it. */
  private readonly links: RefCounted<string>;
  /** Pipes by `kind|producerId|from|to`; one reference per consumer or data consumer on `to` (or in creation). */
  private readonly pipes: RefCounted<string>;
  /** Consumers and data consumers fed by a pipe, and which (their ids are UUIDs: one map holds both). */
  private readonly consumerPipes = new Map<string, string>();

  constructor(
    private readonly roomId: string,
    private readonly call: AgentCall,
    private readonly enableSrtp: boolean,
    logger: Logger,
  ) {
    this.links = new RefCounted(
      (pair) => this.openLink(pair),
      (pair) => this.closeLink(pair),
      logger,
    );
    this.pipes = new RefCounted(
      (key) => this.openPipe(parsePipeKey(key)),
      (key) => this.closePipe(parsePipeKey(key)),
      logger,
    );
  }

  /**
   * Makes `producerId` (on agent `from`) consumable on agent `to` and holds
   * the pipe for one consumer; `bind` the consumer once created, or `drop`
   * the hold if it was not.
   */
  hold(producerId: string, from: string, to: string): Promise<string> {
    return this.holdPipe({ kind: 'media', producerId, from, to });
  }

  /** The same for a data producer and one data consumer of it on `to`. */
  holdData(dataProducerId: string, from: string, to: string): Promise<string> {
    return this.holdPipe({ kind: 'data', producerId: dataProducerId, from, to });
  }

  private async holdPipe(pipe: PipeKey): Promise<string> {
    const key = pipeKeyOf(pipe);
    await this.pipes.acquire(key);
    return key;
  }

  bind(consumerId: string, key: string): void {
    this.consumerPipes.set(consumerId, key);
  }

  drop(key: string): void {
    this.pipes.release(key);
  }

  /** A consumer or data consumer closed; its pipe goes with its last consumer. */
  release(consumerId: string): void {
    const key = this.consumerPipes.get(consumerId);
    if (key === undefined) return;
    this.consumerPipes.delete(consumerId);
    this.pipes.release(key);
  }

  /** Agents currently receiving `producerId` over a link. */
  receiversOf(producerId: string): string[] {
    return this.pipes
      .keys()
      .map(parsePipeKey)
      .filter((p) => p.kind === 'media' && p.producerId === producerId)
      .map((p) => p.to);
  }

  /**
   * The producer closed on its agent (its pipe consumers went with it): the
   * copies elsewhere are closed, which closes their consumers, whose release
   * then tears the pipes down.
   */
  producerClosed(producerId: string): void {
    this.sourceClosed('media', producerId);
  }

  /** The same for a data producer: its copies close, and with them their data consumers and pipes. */
  dataProducerClosed(dataProducerId: string): void {
    this.sourceClosed('data', dataProducerId);
  }

  private sourceClosed(kind: PipeKind, producerId: string): void {
    for (const pipe of this.pipes.keys().map(parsePipeKey)) {
      if (pipe.kind !== kind || pipe.producerId !== producerId) continue;
      void this.unpipe(pipe.to, pipe.from, pipe).catch(() => undefined);
    }
  }

  /** Stops `pipe` on `agentId`, whichever end it is (the far end is `remoteAgentId`). */
  private unpipe(agentId: string, remoteAgentId: string, pipe: PipeKey): Promise<null> {
    const roomId = this.roomId;
    return pipe.kind === 'media'
      ? this.call(agentId, 'unpipe', { roomId, remoteAgentId, producerId: pipe.producerId })
      : this.call(agentId, 'unpipeData', { roomId, remoteAgentId, dataProducerId: pipe.producerId });
  }

  /**
   * The room's router on `agentId` is gone (last peer left, agent lost): what
   * crossed to or from it is forgotten, and the far ends of its links are
   * closed, which closes the piped copies there and their consumers.
   */
  agentGone(agentId: string): void {
    const gone = new Set(
      this.pipes.forget((key) => {
        const p = parsePipeKey(key);
        return p.from === agentId || p.to === agentId;
      }),
    );
    for (const [consumerId, key] of this.consumerPipes) if (gone.has(key)) this.consumerPipes.delete(consumerId);
    for (const pair of this.links.forget((p) => p.split('\n').includes(agentId))) {
      const other = pair.split('\n').find((id) => id !== agentId)!;
      void this.call(other, 'closePipeTransport', { roomId: this.roomId, remoteAgentId: agentId }).catch(() => undefined);
    }
  }

  /** Pipes and links currently open (or opening). */
  get size(): { links: number; pipes: number } {
    return { links: this.links.keys().length, pipes: this.pipes.keys().length };
  }

  private async openPipe(pipe: PipeKey): Promise<void> {
    const { from, to } = pipe;
    const pair = pairOf(from, to);
    await this.links.acquire(pair);
    try {
      await (pipe.kind === 'media' ? this.sendMedia(pipe) : this.sendData(pipe));
    } catch (err) {
      await Promise.allSettled([this.unpipe(from, to, pipe), this.unpipe(to, from, pipe)]);
      this.links.release(pair);
      throw err;
    }
  }

  private async sendMedia({ producerId, from, to }: PipeKey): Promise<void> {
    const roomId = this.roomId;
    const sent = await this.call(from, 'pipeConsume', { roomId, remoteAgentId: to, producerId });
    await this.call(to, 'pipeProduce', { roomId, remoteAgentId: from, producerId, ...sent });
  }

  /** The data producer's stream over the link's SCTP association: the far copy takes the stream the sender chose. */
  private async sendData({ producerId: dataProducerId, from, to }: PipeKey): Promise<void> {
    const roomId = this.roomId;
    const sent = await this.call(from, 'pipeConsumeData', { roomId, remoteAgentId: to, dataProducerId });
    await this.call(to, 'pipeProduceData', { roomId, remoteAgentId: from, dataProducerId, ...sent });
  }

  private async closePipe(pipe: PipeKey): Promise<void> {
    await Promise.allSettled([this.unpipe(pipe.to, pipe.from, pipe), this.unpipe(pipe.from, pipe.to, pipe)]);
    this.links.release(pairOf(pipe.from, pipe.to));
  }

  private async openLink(pair: string): Promise<void> {
    const [a, b] = pair.split('\n') as [string, string];
    const roomId = this.roomId;
    try {
      const [endA, endB] = await Promise.all([
        this.call(a, 'createPipeTransport', { roomId, remoteAgentId: b, enableSrtp: this.enableSrtp }),
        this.call(b, 'createPipeTransport', { roomId, remoteAgentId: a, enableSrtp: this.enableSrtp }),
      ]);
      await Promise.all([
        this.call(a, 'connectPipeTransport', { roomId, remoteAgentId: b, ...endB }),
        this.call(b, 'connectPipeTransport', { roomId, remoteAgentId: a, ...endA }),
      ]);
    } catch (err) {
      await this.closeLink(pair);
      throw err;
    }
  }

  private async closeLink(pair: string): Promise<void> {
    const [a, b] = pair.split('\n') as [string, string];
    await Promise.allSettled([
      this.call(a, 'closePipeTransport', { roomId: this.roomId, remoteAgentId: b }),
      this.call(b, 'closePipeTransport', { roomId: this.roomId, remoteAgentId: a }),
    ]);
  }
}
