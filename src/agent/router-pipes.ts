import type { types } from 'mediasoup';

/** Something whose life holds a pipe: a consumer (or data consumer) of the piped producer, or a cascade link's pipe consumer. */
interface Holder {
  observer: { once(event: 'close', listener: () => void): unknown };
}

type PipeKind = 'producer' | 'dataProducer';

interface Pipe {
  /** The pipe's consumer on the source router; closing it closes the pipe producer on the other (mediasoup links the two). */
  ready: Promise<Holder & { close(): void }>;
  users: number;
}

/**
 * A room's producers and data producers piped between its routers on this
 * agent (pipeToRouter, same host), only where something consumes them. A pipe
 * is made on first use (concurrent users share the pending one) and closed
 * when the last thing holding it closes, so an idle stream costs no worker
 * a copy. The pipe producer keeps the producer's id, so consumers on the
 * other router name it as any other.
 */
export class RouterPipes {
  private readonly pipes = new Map<string, Pipe>();

  /**
   * Runs `create` once producer `id` of router `from` is available on `to`,
   * and holds that pipe as long as what `create` made lives.
   */
  async hold<T extends Holder>(kind: PipeKind, id: string, from: types.Router, to: types.Router, create: () => Promise<T>): Promise<T> {
    if (from === to) return create();
    const key = `${kind}|${to.id}|${id}`;
    let pipe = this.pipes.get(key);
    if (!pipe) pipe = this.open(key, kind, id, from, to);
    pipe.users++;
    let made: T;
    try {
      await pipe.ready;
      made = await create();
    } catch (err) {
      this.release(key, pipe);
      throw err;
    }
    const held = pipe;
    made.observer.once('close', () => this.release(key, held));
    return made;
  }

  /** How many pipes are open or opening (the agent's dump). */
  get size(): number {
    return this.pipes.size;
  }

  private open(key: string, kind: PipeKind, id: string, from: types.Router, to: types.Router): Pipe {
    const ready = from
      .pipeToRouter(kind === 'producer' ? { producerId: id, router: to } : { dataProducerId: id, router: to })
      .then((r) => {
        const source: (Holder & { close(): void }) | undefined = r.pipeConsumer ?? r.pipeDataConsumer;
        if (!source) throw new Error(`pipeToRouter gave no pipe consumer for ${kind} ${id}`);
        return source;
      });
    const pipe: Pipe = { ready, users: 0 };
    this.pipes.set(key, pipe);
    const forget = () => {
      if (this.pipes.get(key) === pipe) this.pipes.delete(key);
    };
    // A pipe that could not be made, or whose producer closed, is forgotten: the next user pipes anew.
    ready.then((source) => source.observer.once('close', forget), forget);
    return pipe;
  }

  private release(key: string, pipe: Pipe): void {
    if (--pipe.users > 0) return;
    if (this.pipes.get(key) === pipe) this.pipes.delete(key);
    void pipe.ready.then(
      (source) => source.close(),
      () => undefined,
    );
  }
}
