import { randomBytes } from 'node:crypto';
import type { Logger } from '../core/logger.js';
import { newId } from '../core/ids.js';
import type { ServiceRecord, Store } from './store/store.js';

/**
 * Services by id with a short cache: every authenticated request needs its
 * service's key, and a store round trip per request would make the store the
 * bottleneck. A created, changed or deleted service is dropped from every
 * Nuve's cache when `nuve.service.changed` reaches it (`CacheInvalidation`);
 * `ttlMs` bounds how long a lost invalidation leaves an entry.
 */
export class ServiceDirectory {
  private readonly cache = new Map<string, { record: ServiceRecord | undefined; until: number }>();

  constructor(
    private readonly store: Store,
    private readonly ttlMs = 2000,
  ) {}

  async get(id: string): Promise<ServiceRecord | undefined> {
    const hit = this.cache.get(id);
    const now = Date.now();
    if (hit && hit.until > now) return hit.record;
    const record = await this.store.getService(id);
    if (this.cache.size > 10_000) this.cache.clear();
    // Unknown ids are cached too (briefly), so a flood of made-up ids cannot hammer the store.
    this.cache.set(id, { record, until: now + this.ttlMs });
    return record;
  }

  forget(id: string): void {
    this.cache.delete(id);
  }

  /**
   * Makes sure the bootstrap superService exists: the configured id/key when
   * given (created or updated to match), else the one already stored, else a
   * freshly generated one.
   */
  async ensureSuperService(
    wanted: { id?: string; key?: string; name: string },
    logger: Logger,
  ): Promise<ServiceRecord> {
    const existing = await this.store.findSuperService();
    if (existing && (wanted.id === undefined || wanted.id === existing.id)) {
      if (wanted.key !== undefined && wanted.key !== existing.key) {
        await this.store.updateServiceKey(existing.id, wanted.key);
        logger.info({ serviceId: existing.id }, 'superService key replaced from configuration');
        return { ...existing, key: wanted.key };
      }
      return existing;
    }
    if (existing) {
      // The configured id names a different superService: the old one stops being super.
      await this.store.deleteService(existing.id);
      logger.warn({ serviceId: existing.id }, 'previous superService removed: configuration names another');
    }
    return this.createSuper(wanted.id ?? newId(), wanted.key ?? generateServiceKey(), wanted.name, logger);
  }

  private async createSuper(id: string, key: string, name: string, logger: Logger): Promise<ServiceRecord> {
    const record: ServiceRecord = { id, key, name, isSuper: true, createdAt: Date.now() };
    await this.store.createService(record);
    logger.info({ serviceId: id }, 'superService created');
    return record;
  }
}

export function generateServiceKey(): string {
  return randomBytes(24).toString('base64url');
}
