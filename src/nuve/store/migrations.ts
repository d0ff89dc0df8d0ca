import type { Kysely, Migration } from 'kysely';
import type { RoleMigrations } from '../../core/database.js';

/**
 * Migrations in code so both engines run exactly the same steps. Append only:
 * a released migration is never edited.
 */
const migrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('services')
        .addColumn('id', 'varchar(24)', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('is_super', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('rooms')
        .addColumn('id', 'varchar(24)', (c) => c.primaryKey())
        .addColumn('service_id', 'varchar(24)', (c) => c.notNull().references('services.id').onDelete('cascade'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('data', 'text')
        .addColumn('p2p', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('media_configuration', 'text')
        .addColumn('eapolicy', 'text', (c) => c.notNull())
        .addColumn('gateway_id', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('rooms_service_idx').on('rooms').columns(['service_id', 'created_at']).execute();
      await db.schema
        .createTable('tokens')
        .addColumn('id', 'varchar(32)', (c) => c.primaryKey())
        .addColumn('service_id', 'varchar(24)', (c) => c.notNull().references('services.id').onDelete('cascade'))
        .addColumn('room_id', 'varchar(24)', (c) => c.notNull().references('rooms.id').onDelete('cascade'))
        .addColumn('user_name', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('gateway_id', 'text', (c) => c.notNull())
        .addColumn('eapolicy', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('tokens_expiry_idx').on('tokens').column('expires_at').execute();
    },
  },
  '0002_session_tokens': {
    async up(db: Kysely<any>) {
      // Session tokens: a user of a tenant with scopes, a room only for some (hence not in `tokens`, whose room is
      // required). Deleting their tenant or room deletes them (the foreign keys cascade).
      await db.schema
        .createTable('session_tokens')
        .addColumn('id', 'varchar(32)', (c) => c.primaryKey())
        .addColumn('service_id', 'varchar(24)', (c) => c.notNull().references('services.id').onDelete('cascade'))
        .addColumn('user_name', 'text', (c) => c.notNull())
        .addColumn('scopes', 'text', (c) => c.notNull())
        .addColumn('room_id', 'varchar(24)', (c) => c.references('rooms.id').onDelete('cascade'))
        .addColumn('role', 'text')
        .addColumn('gateway_id', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('session_tokens_expiry_idx').on('session_tokens').column('expires_at').execute();
    },
  },
};

/**
 * Kysely's default table names: Nuve was the only role with tables when it
 * started recording migrations there, and existing databases must not run
 * them again.
 */
export const nuveMigrations: RoleMigrations = { table: 'kysely_migration', migrations };
