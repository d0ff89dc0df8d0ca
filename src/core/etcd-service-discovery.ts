import { EventEmitter } from 'node:events';
import { Etcd3, GRPCUnavailableError, type IKeyValue, type IOptions, type IWatchResponse, type Lease, type Watcher, isRecoverableError } from 'etcd3';
import { z } from 'zod';
import { AppError } from './errors.js';
import type { Logger } from './logger.js';
import {
  type ServiceDiscovery,
  type ServiceDiscoveryEvents,
  type ServiceInstance,
  type ServiceRegistration,
  type ServiceRemovalReason,
  serviceInstanceSchema,
} from './service-discovery.js';

/** etcd's own limits make larger values legal; an instance description never needs more. */
export const MAX_INSTANCE_VALUE_BYTES = 4096;

/** A key segment under the prefix: what `encodeURIComponent` leaves plus `%`, so an id with `/` stays one segment. */
const prefixSchema = z
  .string()
  .max(128)
  .regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/, 'segments of letters, digits, _ . - joined by /, no leading or trailing /');

export const etcdDiscoveryOptionsSchema = z
  .object({
    /** etcd client URLs, `http://host:2379`. */
    hosts: z.array(z.string().url().max(256)).min(1).max(16),
    /** Every key lives under `<prefix>/`; prefixes of two deployments must not nest. */
    prefix: prefixSchema,
    /** etcd refuses TTLs under its election timeout × 1.5 (2 s with the defaults). */
    leaseTtlSec: z.number().int().min(2).max(600),
    /** How often each registration's value is put again (its load); default a third of the TTL. */
    refreshMs: z.number().int().min(50).max(600_000).optional(),
    /** How often the whole prefix is read again, catching what the watch missed; default 30 s. */
    relistMs: z.number().int().min(100).max(3_600_000).optional(),
    /** Instances of one service kept in the view; more are ignored with a log line. */
    maxInstancesPerService: z.number().int().min(1).max(100_000).optional(),
  })
  .strict()
  .refine((o) => o.refreshMs === undefined || o.refreshMs < o.leaseTtlSec * 1000, {
    message: 'refreshMs must be shorter than the lease TTL, or values would be put after the lease expired',
    path: ['refreshMs'],
  });

export type EtcdDiscoveryOptions = z.input<typeof etcdDiscoveryOptionsSchema>;

/** `hosts` as one setting can carry it (an MSS_* variable is text): `http://a:2379,http://b:2379`. */
export function parseEtcdHosts(text: string): string[] {
  return text
    .split(',')
    .map((h) => h.trim())
    .filter(Boolean);
}

const DEFAULT_RELIST_MS = 30_000;
const DEFAULT_MAX_INSTANCES_PER_SERVICE = 1000;
/** Distinct services kept in the view (a bound on memory whatever is written under the prefix). */
const MAX_SERVICES = 1000;
/** Malformed keys remembered so each is logged once per value, not at every re-list. */
const MAX_REPORTED_MALFORMED = 1000;
/** Retries after a failed refresh or a lost lease start here and double up to refreshMs. */
const MIN_RETRY_MS = 100;
/**
 * A host that failed is tried again after this at most. etcd3's default shuts it for 5 s after
 * three failures and backs the watch off up to 30 s: longer than an etcd restart takes, and
 * longer than the lease TTLs discovery uses, so every lease would be lost on each restart.
 */
const HOST_REOPEN_MS = 1000;
/** Segment under the prefix holding goodbye markers; no service name starts with `~`. */
const GOODBYE_SEGMENT = '~bye';

interface ViewEntry {
  instance: ServiceInstance;
  /** etcd's mod_revision of the value this entry shows; older news is ignored. */
  modRevision: number;
}

interface LocalRegistration {
  key: string;
  service: string;
  id: string;
  describe: () => ServiceInstance;
  /** The last error logged for its value, so a bad `describe` is logged once, not at each refresh. */
  lastValueError?: string;
  /** The incarnation of the value last put: what a goodbye may delete. */
  incarnation?: string;
}

/**
 * Service discovery on etcd. Each instance is one key `<prefix>/<service>/<id>`
 * holding its JSON, put with this process's lease (kept alive; a lost lease is
 * replaced and every registration put again at once) and put again every
 * `refreshMs` so its load stays current. The view comes from a watch on the
 * prefix plus a periodic re-list that catches whatever the watch missed.
 *
 * Removal reasons: a withdrawal deletes the key in one transaction with a
 * goodbye marker `<prefix>/~bye/<service>/<id>` (watchers see both at the same
 * revision) and is `down`; a key that goes without a marker went with its
 * lease (expired or revoked) and is `timeout`; the same id with a new
 * incarnation is `restarted`.
 */
export class EtcdServiceDiscovery extends EventEmitter<ServiceDiscoveryEvents> implements ServiceDiscovery {
  private readonly options: z.output<typeof etcdDiscoveryOptionsSchema>;
  private readonly refreshMs: number;
  private readonly relistMs: number;
  private readonly maxPerService: number;
  private readonly log: Logger;
  private readonly root: string;
  private client?: Etcd3;
  private watcher?: Watcher;
  private started = false;
  private closed = false;

  // The view.
  private readonly entries = new Map<string, Map<string, ViewEntry>>();
  private readonly sorted = new Map<string, readonly ServiceInstance[]>();
  /** Keys removed at a revision, so a re-list snapshot older than the removal does not bring them back. */
  private readonly removedAt = new Map<string, number>();
  /** The problem last logged for each malformed key. */
  private readonly reportedMalformed = new Map<string, string>();
  /** The newest etcd revision seen; a re-list below it means etcd lost its data (wiped, restored). */
  private highestRevision = 0;
  private relistTimer?: NodeJS.Timeout;
  private relisting?: Promise<void>;
  private relistFailures = 0;
  private watchDisconnected = false;
  private rewatchTimer?: NodeJS.Timeout;
  private rewatchFailures = 0;

  // This process's registrations.
  private readonly registrations = new Map<string, LocalRegistration>();
  private lease?: Lease;
  private refreshTimer?: NodeJS.Timeout;
  private refreshing?: Promise<void>;
  private refreshAgain = false;
  private refreshFailures = 0;

  constructor(options: EtcdDiscoveryOptions, logger: Logger) {
    super();
    this.options = etcdDiscoveryOptionsSchema.parse(options);
    this.refreshMs = this.options.refreshMs ?? Math.floor((this.options.leaseTtlSec * 1000) / 3);
    this.relistMs = this.options.relistMs ?? DEFAULT_RELIST_MS;
    this.maxPerService = this.options.maxInstancesPerService ?? DEFAULT_MAX_INSTANCES_PER_SERVICE;
    this.root = `${this.options.prefix}/`;
    this.log = logger.child({ component: 'etcd-discovery', prefix: this.options.prefix });
  }

  /** Reads the prefix once (rejecting when etcd cannot be reached), then watches it and re-lists periodically. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.client = new Etcd3(this.clientOptions());
    try {
      const revision = await this.relist();
      await this.watch(revision + 1);
    } catch (err) {
      // Nothing half-started stays behind; start() may be called again.
      this.client.close();
      this.client = undefined;
      this.started = false;
      throw err;
    }
    this.relistTimer = setInterval(() => void this.relistLogged(), this.relistMs);
    if (this.registrations.size > 0) this.refreshSoon();
  }

  register(describe: () => ServiceInstance): ServiceRegistration {
    if (this.closed) throw new AppError('INVALID_STATE', 'service discovery is closed');
    const parsed = serviceInstanceSchema.safeParse(describe());
    if (!parsed.success) throw new AppError('INVALID_PARAMETERS', `service instance: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    const { service, id } = parsed.data;
    const key = this.instanceKey(service, id);
    if (this.registrations.has(key)) throw new AppError('INVALID_STATE', `instance ${id} of ${service} is already registered here`);
    const registration: LocalRegistration = { key, service, id, describe };
    this.registrations.set(key, registration);
    if (this.started) this.refreshSoon();
    return { withdraw: () => this.withdraw(registration) };
  }

  instances(service: string): readonly ServiceInstance[] {
    let list = this.sorted.get(service);
    if (!list) {
      const byId = this.entries.get(service);
      if (!byId) return [];
      list = [...byId.values()].map((e) => e.instance).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      this.sorted.set(service, list);
    }
    return list;
  }

  services(): string[] {
    return [...this.entries.keys()].sort();
  }

  /** Says goodbye for every registration (others see them go at once), revokes the lease, stops watching. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.relistTimer);
    clearTimeout(this.refreshTimer);
    clearTimeout(this.rewatchTimer);
    const registrations = [...this.registrations.values()];
    this.registrations.clear();
    await this.refreshing;
    if (this.client) {
      await Promise.all(registrations.map((r) => this.sayGoodbye(r)));
      const lease = this.lease;
      this.lease = undefined;
      if (lease && !lease.revoked()) await lease.revoke().catch((err: unknown) => this.log.warn({ err }, 'revoking the etcd lease failed; its keys go when it expires'));
      await this.watcher?.cancel().catch(() => undefined);
      await this.relisting;
      this.client.close();
    }
  }

  // ---- registering ----------------------------------------------------------------------------

  private async withdraw(registration: LocalRegistration): Promise<void> {
    if (this.registrations.get(registration.key) !== registration) return;
    this.registrations.delete(registration.key);
    // A refresh in flight could put the key again after the goodbye deleted it.
    await this.refreshing;
    if (this.client) await this.sayGoodbye(registration);
  }

  /**
   * Deletes the instance's key together with a goodbye marker, so watchers tell a withdrawal
   * (`down`) from a lease that ran out (`timeout`). Only while the key still holds this
   * registration (the incarnation it last put, unchanged since read): a new process under the
   * same id keeps its registration. Whatever lease the key is on (one lost and replaced, too).
   */
  private async sayGoodbye(registration: LocalRegistration): Promise<void> {
    const client = this.client!;
    const goodbye = this.goodbyeKey(registration.service, registration.id);
    try {
      const [current] = (await client.get(registration.key).exec()).kvs;
      if (!current || registration.incarnation === undefined) return;
      if (this.decodeQuietly(current)?.incarnation !== registration.incarnation) return;
      const lease = this.lease && !this.lease.revoked() ? await this.lease.grant().catch(() => undefined) : undefined;
      const marker = client.put(goodbye).value('');
      // On the lease, the marker goes with it even if deleting it below fails.
      if (lease) marker.lease(lease);
      await client.if(registration.key, 'Mod', '==', current.mod_revision).then(marker, client.delete().key(registration.key)).commit();
      // Watchers saw the marker with the delete (same revision); it has done its job.
      await client.delete().key(goodbye).exec();
    } catch (err) {
      this.log.warn({ err, service: registration.service, id: registration.id }, 'withdrawing from etcd failed; the key goes when its lease expires');
    }
  }

  /** Runs a refresh now, or right after the one running (never two at once). */
  private refreshSoon(): void {
    if (this.closed) return;
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    this.scheduleRefresh(this.refreshFailures > 0 ? this.retryDelay() : 0);
  }

  private scheduleRefresh(delayMs: number): void {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => {
      this.refreshing = this.refresh().finally(() => (this.refreshing = undefined));
    }, delayMs);
  }

  /** Puts every registration's current value with the current lease (granting one if it was lost). */
  private async refresh(): Promise<void> {
    this.refreshAgain = false;
    if (this.registrations.size > 0) {
      try {
        const lease = await this.currentLease();
        const results = await Promise.allSettled([...this.registrations.values()].map((r) => this.put(lease, r)));
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
        if (this.refreshFailures > 0) this.log.info({ registrations: this.registrations.size }, 'etcd registrations put again');
        this.refreshFailures = 0;
      } catch (err) {
        if (this.refreshFailures++ === 0) this.log.warn({ err }, 'putting registrations into etcd failed; retrying with backoff');
      }
    }
    if (this.closed || this.registrations.size === 0) return;
    this.scheduleRefresh(this.refreshFailures > 0 ? this.retryDelay() : this.refreshAgain ? 0 : this.refreshMs);
  }

  private retryDelay(): number {
    return Math.min(this.refreshMs, MIN_RETRY_MS * 2 ** Math.min(this.refreshFailures - 1, 16));
  }

  private async put(lease: Lease, registration: LocalRegistration): Promise<void> {
    const instance = this.encode(registration);
    if (instance === undefined) return;
    // Withdrawn while the lease was being granted: its goodbye waits for this refresh, so nothing is put after it.
    if (this.registrations.get(registration.key) !== registration) return;
    await lease.put(registration.key).value(instance.value).exec();
    registration.incarnation = instance.incarnation;
  }

  /** The registration's value now, or undefined (logged once per distinct problem) when `describe` went wrong. */
  private encode(registration: LocalRegistration): { value: string; incarnation: string } | undefined {
    let problem: string;
    try {
      const parsed = serviceInstanceSchema.safeParse(registration.describe());
      if (!parsed.success) problem = parsed.error.issues[0]?.message ?? 'invalid';
      else if (parsed.data.service !== registration.service || parsed.data.id !== registration.id) problem = 'service or id changed since it was registered';
      else {
        const value = JSON.stringify(parsed.data);
        if (Buffer.byteLength(value) <= MAX_INSTANCE_VALUE_BYTES) {
          registration.lastValueError = undefined;
          return { value, incarnation: parsed.data.incarnation };
        }
        problem = `value over ${MAX_INSTANCE_VALUE_BYTES} bytes`;
      }
    } catch (err) {
      problem = `describe() threw: ${err instanceof Error ? err.message : String(err)}`;
    }
    if (registration.lastValueError !== problem) {
      registration.lastValueError = problem;
      this.log.error({ service: registration.service, id: registration.id, problem }, 'service instance not refreshed in etcd: its description is invalid');
    }
    return undefined;
  }

  private async currentLease(): Promise<Lease> {
    let lease = this.lease;
    if (!lease || lease.revoked()) {
      lease = this.client!.lease(this.options.leaseTtlSec);
      this.lease = lease;
      const granted = lease;
      lease.on('lost', (err) => this.leaseLost(granted, err));
    }
    await lease.grant();
    return lease;
  }

  /** Keepalive refused or failed past the TTL, or a put named an unknown lease: register again with a new one. */
  private leaseLost(lease: Lease, err: unknown): void {
    if (this.lease !== lease || this.closed) return;
    this.lease = undefined;
    // While etcd is unreachable each new lease fails to be granted too: one line for the streak.
    const level = this.refreshFailures === 0 ? 'warn' : 'debug';
    this.log[level]({ err: err instanceof Error ? err.message : String(err) }, 'etcd lease lost; registering again with a new lease');
    this.refreshSoon();
  }

  // ---- the view -------------------------------------------------------------------------------

  private clientOptions(): IOptions {
    const reopenMs = Math.min(this.refreshMs, HOST_REOPEN_MS);
    return {
      hosts: this.options.hosts,
      dialTimeout: 5000,
      faultHandling: { host: () => hostBreaker(reopenMs), watchBackoff: new CappedBackoff(MIN_RETRY_MS / 2, reopenMs) },
    };
  }

  private async watch(fromRevision: number): Promise<void> {
    const watcher = await this.client!.watch().prefix(this.root).startRevision(String(fromRevision)).create();
    if (this.closed) return void (await watcher.cancel().catch(() => undefined));
    this.watcher = watcher;
    watcher.on('data', (res) => this.handleWatchResponse(res));
    watcher.on('disconnected', (err) => {
      if (!this.watchDisconnected) this.log.warn({ err: err.message }, 'etcd watch disconnected; reconnecting');
      this.watchDisconnected = true;
    });
    watcher.on('connected', () => {
      if (!this.watchDisconnected) return;
      this.watchDisconnected = false;
      this.log.info('etcd watch reconnected; re-listing');
      void this.relistLogged();
    });
    // etcd cancelled the watch (e.g. its revision was compacted away): re-list and watch from there.
    watcher.on('error', (err) => {
      if (this.watcher !== watcher || this.closed) return;
      this.log.warn({ err: err.message }, 'etcd watch cancelled; re-listing and watching again');
      this.watcher = undefined;
      this.rewatchSoon();
    });
  }

  private rewatchSoon(): void {
    const delay = this.rewatchFailures === 0 ? 0 : Math.min(this.relistMs, MIN_RETRY_MS * 2 ** Math.min(this.rewatchFailures, 16));
    this.rewatchTimer = setTimeout(() => {
      this.relist()
        // A re-list that found etcd's data lost has started a watch of its own.
        .then((revision) => (this.watcher ? undefined : this.watch(revision + 1)))
        .then(
          () => (this.rewatchFailures = 0),
          (err: unknown) => {
            this.log[this.rewatchFailures++ === 0 ? 'warn' : 'debug']({ err }, 'watching etcd again failed; retrying');
            if (!this.closed) this.rewatchSoon();
          },
        );
    }, delay);
  }

  /**
   * One watch response: the events of one or more revisions. Goodbye markers are read first,
   * so a withdrawal's delete (same transaction) is known as one whatever the event order.
   */
  protected handleWatchResponse(res: IWatchResponse): void {
    if (this.closed) return;
    this.highestRevision = Math.max(this.highestRevision, Number(res.header.revision));
    const goodbyes = new Set<string>();
    for (const event of res.events) {
      if (event.type === 'Put') {
        const goodbyeFor = this.goodbyeTarget(event.kv.key.toString());
        if (goodbyeFor) goodbyes.add(goodbyeFor);
      }
    }
    for (const event of res.events) {
      const key = event.kv.key.toString();
      if (this.goodbyeTarget(key) !== undefined) continue;
      const revision = Number(event.kv.mod_revision);
      if (event.type === 'Put') this.apply(event.kv);
      else if (event.type === 'Delete') this.remove(key, goodbyes.has(key) ? 'down' : 'timeout', revision);
    }
  }

  private async relistLogged(): Promise<void> {
    try {
      await this.relist();
      if (this.relistFailures > 0) this.log.info({ failures: this.relistFailures }, 're-listing etcd works again');
      this.relistFailures = 0;
    } catch (err) {
      const level = this.relistFailures++ === 0 ? 'warn' : 'debug';
      this.log[level]({ err: err instanceof Error ? err.message : String(err) }, 're-listing etcd failed; next try at the next period');
    }
  }

  /** Reads the whole prefix and makes the view match it; returns the snapshot's revision. */
  private relist(): Promise<number> {
    const run = (async () => {
      await this.relisting;
      // Revisions seen before the read was sent precede its snapshot (a linearizable read); those
      // seen while it was in flight may not.
      const seenBefore = this.highestRevision;
      const res = await this.client!.getAll().prefix(this.root).exec();
      const revision = Number(res.header.revision);
      if (this.closed) return revision;
      if (revision < seenBefore) await this.forgetRevisions(revision);
      this.highestRevision = Math.max(this.highestRevision, revision);
      const present = new Set<string>();
      const goodbyes = new Set<string>();
      for (const kv of res.kvs) {
        const key = kv.key.toString();
        const goodbyeFor = this.goodbyeTarget(key);
        if (goodbyeFor) goodbyes.add(goodbyeFor);
        else {
          // A malformed value over a good one is ignored here as in the watch: the key is still there.
          present.add(key);
          this.apply(kv);
        }
      }
      for (const [service, byId] of this.entries) {
        for (const [id, entry] of byId) {
          const key = this.instanceKey(service, id);
          if (!present.has(key) && entry.modRevision <= revision) this.remove(key, goodbyes.has(key) ? 'down' : 'timeout', revision);
        }
      }
      // Removals the snapshot already reflects need no memory any more.
      for (const [key, removed] of this.removedAt) if (removed <= revision) this.removedAt.delete(key);
      return revision;
    })();
    this.relisting = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /**
   * etcd's revision went back: it lost its data (wiped, restored from a backup). Revisions seen
   * before mean nothing now, so this snapshot is the truth, and the watch (waiting for a
   * revision that may never come) starts again after it.
   */
  private async forgetRevisions(revision: number): Promise<void> {
    this.log.warn({ revision, before: this.highestRevision }, 'etcd revision went back (its data was lost); rebuilding the view and the watch');
    this.highestRevision = revision;
    this.removedAt.clear();
    for (const byId of this.entries.values()) for (const entry of byId.values()) entry.modRevision = 0;
    const old = this.watcher;
    this.watcher = undefined;
    await old?.cancel().catch(() => undefined);
    await this.watch(revision + 1);
  }

  /** Takes a put (watched or listed) into the view. */
  private apply(kv: IKeyValue): void {
    const key = kv.key.toString();
    const revision = Number(kv.mod_revision);
    const instance = this.decode(key, kv);
    if (!instance) return;
    const removed = this.removedAt.get(key);
    if (removed !== undefined && removed >= revision) return;
    let byId = this.entries.get(instance.service);
    const existing = byId?.get(instance.id);
    if (existing) {
      if (revision <= existing.modRevision) return;
      if (existing.instance.incarnation !== instance.incarnation) {
        this.remove(key, 'restarted', revision - 1);
        this.apply(kv);
        return;
      }
      const changed = JSON.stringify(existing.instance) !== JSON.stringify(instance);
      byId!.set(instance.id, { instance, modRevision: revision });
      this.reportedMalformed.delete(key);
      if (changed) {
        this.sorted.delete(instance.service);
        this.emit('updated', instance);
      }
      return;
    }
    if (!byId) {
      if (this.entries.size >= MAX_SERVICES) return this.malformed(key, `more than ${MAX_SERVICES} services under the prefix`);
      byId = new Map();
      this.entries.set(instance.service, byId);
    }
    if (byId.size >= this.maxPerService) return this.malformed(key, `more than ${this.maxPerService} instances of ${instance.service}`);
    this.removedAt.delete(key);
    this.reportedMalformed.delete(key);
    byId.set(instance.id, { instance, modRevision: revision });
    this.sorted.delete(instance.service);
    this.emit('added', instance);
  }

  private remove(key: string, reason: ServiceRemovalReason, revision: number): void {
    const parsed = this.parseKey(key);
    if (!parsed) return;
    const byId = this.entries.get(parsed.service);
    const entry = byId?.get(parsed.id);
    if (!byId || !entry || entry.modRevision > revision) return;
    byId.delete(parsed.id);
    if (byId.size === 0) this.entries.delete(parsed.service);
    this.sorted.delete(parsed.service);
    this.removedAt.set(key, revision);
    this.emit('removed', entry.instance, reason);
  }

  /** The instance a key and value describe, or undefined (logged once per key) when either is malformed. */
  private decode(key: string, kv: IKeyValue): ServiceInstance | undefined {
    const result = this.validate(key, kv);
    if (typeof result !== 'string') return result;
    this.malformed(key, result);
    return undefined;
  }

  private decodeQuietly(kv: IKeyValue): ServiceInstance | undefined {
    const result = this.validate(kv.key.toString(), kv);
    return typeof result === 'string' ? undefined : result;
  }

  /** The instance a key and value describe, or what is wrong with them. */
  private validate(key: string, kv: IKeyValue): ServiceInstance | string {
    const parsed = this.parseKey(key);
    if (!parsed) return 'key is not <prefix>/<service>/<id>';
    if (kv.value.length > MAX_INSTANCE_VALUE_BYTES) return `value over ${MAX_INSTANCE_VALUE_BYTES} bytes`;
    let json: unknown;
    try {
      json = JSON.parse(kv.value.toString());
    } catch {
      return 'value is not JSON';
    }
    const result = serviceInstanceSchema.safeParse(json);
    if (!result.success) return `value is not a service instance: ${result.error.issues[0]?.path.join('.')} ${result.error.issues[0]?.message}`;
    if (result.data.service !== parsed.service || result.data.id !== parsed.id) return 'service or id differs from the key';
    return result.data;
  }

  /** Logs a key's problem once, however often re-lists or its writer's refreshes bring it back. */
  private malformed(key: string, problem: string): void {
    if (this.reportedMalformed.get(key) === problem) return;
    if (this.reportedMalformed.size >= MAX_REPORTED_MALFORMED) this.reportedMalformed.clear();
    this.reportedMalformed.set(key, problem);
    this.log.warn({ key: key.slice(0, 300), problem }, 'ignoring a malformed or excess entry under the etcd discovery prefix');
  }

  // ---- keys -----------------------------------------------------------------------------------

  private instanceKey(service: string, id: string): string {
    return `${this.root}${service}/${encodeURIComponent(id)}`;
  }

  private goodbyeKey(service: string, id: string): string {
    return `${this.root}${GOODBYE_SEGMENT}/${service}/${encodeURIComponent(id)}`;
  }

  /** The instance key a goodbye marker key stands for, or undefined when `key` is no marker. */
  private goodbyeTarget(key: string): string | undefined {
    const markerRoot = `${this.root}${GOODBYE_SEGMENT}/`;
    if (!key.startsWith(markerRoot)) return undefined;
    return `${this.root}${key.slice(markerRoot.length)}`;
  }

  private parseKey(key: string): { service: string; id: string } | undefined {
    if (!key.startsWith(this.root)) return undefined;
    const parts = key.slice(this.root.length).split('/');
    if (parts.length !== 2 || !parts[0] || !parts[1]) return undefined;
    let id: string;
    try {
      id = decodeURIComponent(parts[1]);
    } catch {
      return undefined;
    }
    return { service: parts[0], id };
  }
}

type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions['faultHandling']>['host']>>;

/**
 * etcd3's per-host policy: after three consecutive connection failures the host is skipped
 * (another host is tried; with one host the call fails at once) for `reopenMs`, then tried again.
 */
function hostBreaker(reopenMs: number): HostPolicy {
  let failures = 0;
  let openUntil = 0;
  const noEvents = () => ({ dispose: () => undefined });
  const policy = {
    onSuccess: noEvents,
    onFailure: noEvents,
    async execute<T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
      if (Date.now() < openUntil) throw new GRPCUnavailableError('etcd host skipped after repeated connection failures');
      try {
        const result = await fn({ signal: signal ?? new AbortController().signal });
        failures = 0;
        return result;
      } catch (err) {
        if (err instanceof Error && isRecoverableError(err) && ++failures >= 3) {
          failures = 0;
          openUntil = Date.now() + reopenMs;
        }
        throw err;
      }
    },
  };
  return policy as unknown as HostPolicy;
}

/** The watch stream's reconnection delays: doubling from `duration` up to `maxMs`. */
class CappedBackoff {
  constructor(
    readonly duration: number,
    private readonly maxMs: number,
  ) {}

  next(): CappedBackoff {
    return new CappedBackoff(Math.min(this.maxMs, this.duration * 2), this.maxMs);
  }
}
