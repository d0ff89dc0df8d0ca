import { EventEmitter } from 'node:events';
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import type { Logger } from '../core/logger.js';
import { mediaCodecs } from './media-codecs.js';

export interface WorkerPoolOptions {
  numWorkers: number;
  logLevel: types.WorkerLogLevel;
  listenIp: string;
  announcedAddress?: string;
  webRtcBasePort: number;
  plainRtpMinPort: number;
  plainRtpMaxPort: number;
  /** Keep one router ready per worker, so that opening a room does not wait for the worker to create one. */
  spareRouters: boolean;
}

/** How long after a spare is taken the next one is made: after the opening join's next requests. */
const SPARE_REFILL_DELAY_MS = 20;

/** One mediasoup worker with its WebRtcServer (one UDP + one TCP port, so deployments need no port ranges). */
export interface WorkerSlot {
  index: number;
  worker: types.Worker;
  webRtcServer: types.WebRtcServer;
  /** Live consumers on this worker's routers: the placement load. */
  consumers: number;
  /** A router created ahead for the next room opened on this worker (`spareRouters`). */
  spare?: types.Router;
  /** The spare is being created. */
  refilling?: boolean;
}

interface PoolEvents {
  /** The slot's worker died; its routers are gone. A replacement is being started. */
  workerDied: [WorkerSlot];
  workerReplaced: [WorkerSlot];
}

/**
 * One worker per core. A dead worker is replaced in place (same index, same
 * WebRtcServer ports) instead of exiting the process, so the agent's other
 * rooms go on.
 */
export class WorkerPool extends EventEmitter<PoolEvents> {
  private readonly slots: WorkerSlot[] = [];
  private closed = false;

  constructor(
    private readonly options: WorkerPoolOptions,
    private readonly logger: Logger,
  ) {
    super();
  }

  async start(): Promise<void> {
    for (let index = 0; index < this.options.numWorkers; index++) this.slots.push(await this.createSlot(index));
  }

  get size(): number {
    return this.slots.length;
  }

  all(): readonly WorkerSlot[] {
    return this.slots;
  }

  /** The worker with the fewest consumers; ties go to the lowest index. */
  leastLoaded(): WorkerSlot {
    const slot = this.slots.reduce<WorkerSlot | undefined>(
      (best, s) => (!s.worker.closed && (!best || s.consumers < best.consumers) ? s : best),
      undefined,
    );
    if (!slot) throw new Error('no live mediasoup worker');
    return slot;
  }

  /**
   * A router for a room on `slot`: its spare if it has one (the opening then
   * waits for no worker round trip; a new spare is made behind it), else a
   * new one. Every router has the same codecs, so a spare fits any room.
   */
  createRouter(slot: WorkerSlot, appData: { roomId: string; gatewayId: string }): Promise<types.Router> {
    const spare = slot.spare;
    slot.spare = undefined;
    // Not in this turn, nor the next: createRouter computes the router's capabilities synchronously
    // (~0.4 ms), and the first join's next request, already in the socket, would wait behind it.
    if (this.options.spareRouters) setTimeout(() => void this.refill(slot), SPARE_REFILL_DELAY_MS).unref();
    if (spare && !spare.closed) {
      spare.appData = appData;
      return Promise.resolve(spare);
    }
    return slot.worker.createRouter({ mediaCodecs, appData });
  }

  /** Whether `routerId` is a worker's spare, held for no room yet. */
  isSpare(routerId: string): boolean {
    return this.slots.some((s) => s.spare?.id === routerId);
  }

  private refill(slot: WorkerSlot): Promise<void> {
    if (!this.options.spareRouters || slot.spare || slot.refilling || this.closed || slot.worker.closed) return Promise.resolve();
    slot.refilling = true;
    return slot.worker
      .createRouter({ mediaCodecs, appData: {} })
      .then(
        (router) => {
          if (this.closed || slot.worker.closed) router.close();
          else slot.spare = router;
        },
        (err: unknown) => this.logger.warn({ err, worker: slot.index }, 'could not create a spare router'),
      )
      .finally(() => {
        slot.refilling = false;
      });
  }

  private lastCpu?: { at: number; ms: number };

  /** Mean CPU fraction of the live workers since the previous call (user + system time). */
  async cpuUsage(): Promise<number> {
    const live = this.slots.filter((s) => !s.worker.closed);
    const usages = await Promise.all(live.map((s) => s.worker.getResourceUsage().catch(() => undefined)));
    const ms = usages.reduce((sum, u) => sum + (u ? u.ru_utime + u.ru_stime : 0), 0);
    const now = Date.now();
    const previous = this.lastCpu;
    this.lastCpu = { at: now, ms };
    if (!previous || now <= previous.at || live.length === 0) return 0;
    return Math.max(0, (ms - previous.ms) / (now - previous.at) / live.length);
  }

  close(): void {
    this.closed = true;
    for (const slot of this.slots) slot.worker.close();
  }

  private async createSlot(index: number): Promise<WorkerSlot> {
    const o = this.options;
    const worker = await mediasoup.createWorker({
      logLevel: o.logLevel,
      logTags: ['info', 'ice', 'dtls', 'rtp', 'srtp', 'rtcp', 'rtx', 'bwe', 'score', 'simulcast', 'svc', 'sctp'],
      rtcMinPort: o.plainRtpMinPort,
      rtcMaxPort: o.plainRtpMaxPort,
      appData: { index },
    });
    const port = o.webRtcBasePort + index;
    const announcedAddress = o.announcedAddress;
    const webRtcServer = await worker.createWebRtcServer({
      listenInfos: [
        { protocol: 'udp', ip: o.listenIp, announcedAddress, port },
        { protocol: 'tcp', ip: o.listenIp, announcedAddress, port },
      ],
    });
    const slot: WorkerSlot = { index, worker, webRtcServer, consumers: 0 };
    worker.on('died', (error) => void this.onDied(slot, error));
    // A started pool has its spares: the first rooms take them.
    await this.refill(slot);
    this.logger.info({ worker: index, pid: worker.pid, port }, 'mediasoup worker started');
    return slot;
  }

  private async onDied(slot: WorkerSlot, error: Error): Promise<void> {
    if (this.closed) return;
    this.logger.error({ worker: slot.index, pid: slot.worker.pid, err: error }, 'mediasoup worker died; replacing it');
    this.emit('workerDied', slot);
    for (let attempt = 1; !this.closed; attempt++) {
      try {
        const replacement = await this.createSlot(slot.index);
        this.slots[slot.index] = replacement;
        this.emit('workerReplaced', replacement);
        return;
      } catch (err) {
        this.logger.error({ err, worker: slot.index, attempt }, 'could not replace mediasoup worker');
        await new Promise((r) => setTimeout(r, Math.min(5000, 250 * attempt)));
      }
    }
  }
}
