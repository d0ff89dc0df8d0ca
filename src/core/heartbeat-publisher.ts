import type { Bus, Subscription } from './bus/bus.js';

export interface HeartbeatPublisherOptions {
  /** Subjects, as the HeartbeatTable listening to this member names them. */
  heartbeat: string;
  down: string;
  hello: string;
  /** The member's id, the whole payload of `down`. */
  id: string;
  intervalMs: number;
  /** What each heartbeat says, built afresh for every one. */
  payload: () => unknown;
  /** Runs right after each heartbeat left, for work that must never delay it (the agent's CPU sample). */
  afterBeat?: () => void;
}

/**
 * The other half of a HeartbeatTable: one member announcing itself. It
 * publishes every `intervalMs`, at once when a table says hello (a restarted
 * Nuve or gateway learns the cluster without waiting a period) or when this
 * process gets the bus back (the tables restarted their clocks and must hear
 * from it before they expire it), and says `down` on stop so the others forget
 * it without waiting for the timeout.
 */
export class HeartbeatPublisher {
  private timer?: NodeJS.Timeout;
  private helloSubscription?: Subscription;
  private stopListening?: () => void;

  constructor(
    private readonly bus: Bus,
    private readonly options: HeartbeatPublisherOptions,
  ) {}

  start(): void {
    this.helloSubscription = this.bus.subscribe(this.options.hello, () => this.beat());
    this.stopListening = this.bus.onConnectivity((connected) => {
      if (connected) this.beat();
    });
    this.timer = setInterval(() => this.beat(), this.options.intervalMs);
    this.timer.unref();
    this.beat();
  }

  /** Publishes now, e.g. because the state it reports changed. */
  beat(): void {
    this.bus.publish(this.options.heartbeat, this.options.payload());
    this.options.afterBeat?.();
  }

  stop(): void {
    clearInterval(this.timer);
    this.helloSubscription?.unsubscribe();
    this.stopListening?.();
    this.bus.publish(this.options.down, { id: this.options.id });
  }
}
