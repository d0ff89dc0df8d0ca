import type { Kysely } from 'kysely';
import type { NuveTables } from './schema.js';

/** What a tenant decides for itself; an absent field follows the platform's default (configuration). */
export interface TenantSettings {
  /** Whether the app may unmute a participant's track from its server (`POST …/tracks/:track/mute {muted: false}`). */
  allowRemoteUnmute?: boolean;
}

/**
 * Tenants' settings, read from the store on each use rather than cached: they are read where a
 * decision is rare (a remote unmute), and every Nuve instance must see a change at once.
 */
export class TenantSettingsRepository {
  constructor(private readonly db: Kysely<NuveTables>) {}

  async get(serviceId: string): Promise<TenantSettings> {
    const row = await this.db.selectFrom('tenant_settings').selectAll().where('service_id', '=', serviceId).executeTakeFirst();
    return row?.allow_remote_unmute == null ? {} : { allowRemoteUnmute: row.allow_remote_unmute === 1 };
  }

  /** Applies the fields given (others stay) and answers the result. */
  async update(serviceId: string, changes: TenantSettings): Promise<TenantSettings> {
    if (changes.allowRemoteUnmute !== undefined) {
      const allow = changes.allowRemoteUnmute ? 1 : 0;
      await this.db
        .insertInto('tenant_settings')
        .values({ service_id: serviceId, allow_remote_unmute: allow, updated_at: Date.now() })
        .onConflict((oc) => oc.column('service_id').doUpdateSet({ allow_remote_unmute: allow, updated_at: Date.now() }))
        .execute();
    }
    return this.get(serviceId);
  }
}
