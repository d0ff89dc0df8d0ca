/** A small typed event emitter for the browser (no Node `events` needed). */
export type EventMap = Record<string, unknown[]>;
/** One event with its arguments, `[name, ...args]`: a union over E's events, so an emitter of more events takes the events of fewer. */
export type EventArgs<E extends EventMap> = { [K in keyof E]: [event: K, ...args: E[K]] }[keyof E];
type Listener<A extends unknown[]> = (...args: A) => void;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyListener = (...args: any[]) => void;

export class TypedEmitter<E extends EventMap> {
  private readonly listeners = new Map<keyof E, Set<AnyListener>>();

  on<K extends keyof E>(event: K, listener: Listener<E[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as AnyListener);
    return () => this.off(event, listener);
  }

  once<K extends keyof E>(event: K, listener: Listener<E[K]>): () => void {
    const off = this.on(event, ((...args: E[K]) => {
      off();
      listener(...args);
    }) as Listener<E[K]>);
    return off;
  }

  off<K extends keyof E>(event: K, listener: Listener<E[K]>): void {
    this.listeners.get(event)?.delete(listener as AnyListener);
  }

  /** Calls every listener; one that throws is reported on the console and does not stop the others. */
  protected emit(...[event, ...args]: EventArgs<E>): void {
    for (const listener of [...(this.listeners.get(event) ?? [])]) {
      try {
        listener(...args);
      } catch (err) {
        console.error(`mediasoup-signal: a "${String(event)}" listener threw`, err);
      }
    }
  }

  removeAllListeners(): void {
    this.listeners.clear();
  }
}
