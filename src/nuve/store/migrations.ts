import { type Kysely, type Migration, PostgresAdapter } from 'kysely';
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
  '0003_webhooks': {
    async up(db: Kysely<any>) {
      // Where a tenant's events go: room_id '' is the tenant's own URL, a room id overrides it for that room.
      await db.schema
        .createTable('webhooks')
        .addColumn('service_id', 'varchar(24)', (c) => c.notNull().references('services.id').onDelete('cascade'))
        .addColumn('room_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('url', 'text', (c) => c.notNull())
        .addColumn('include_events', 'text')
        .addColumn('exclude_events', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('webhooks_pk', ['service_id', 'room_id'])
        .execute();
      // The outbox: one row per event to deliver, in `seq` order per room. No foreign key to services: an event
      // of a tenant deleted meanwhile is dropped at delivery, never refused at intake (that would stall a gateway).
      const postgres = db.getExecutor().adapter instanceof PostgresAdapter;
      await db.schema
        .createTable('webhook_outbox')
        .addColumn('seq', postgres ? 'bigserial' : 'integer', (c) => (postgres ? c.primaryKey() : c.primaryKey().autoIncrement()))
        .addColumn('event_id', 'varchar(64)', (c) => c.notNull().unique())
        .addColumn('service_id', 'varchar(24)', (c) => c.notNull())
        .addColumn('room_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('body', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        // pending → (delivered rows are deleted) | failed (given up after the retention, kept as the record)
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('next_attempt_at', 'bigint', (c) => c.notNull())
        .addColumn('lease_owner', 'text')
        .addColumn('lease_until', 'bigint')
        .addColumn('last_error', 'text')
        .addColumn('failed_at', 'bigint')
        .execute();
      // The head of each room (oldest pending) and the due rows are what the delivery workers look up.
      await db.schema.createIndex('webhook_outbox_room_idx').on('webhook_outbox').columns(['room_id', 'state', 'seq']).execute();
      await db.schema.createIndex('webhook_outbox_due_idx').on('webhook_outbox').columns(['state', 'next_attempt_at']).execute();
      await db.schema.createIndex('webhook_outbox_failed_idx').on('webhook_outbox').columns(['service_id', 'state', 'seq']).execute();
    },
  },
  '0004_tenant_settings': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('tenant_settings')
        .addColumn('service_id', 'varchar(24)', (c) => c.primaryKey().references('services.id').onDelete('cascade'))
        .addColumn('allow_remote_unmute', 'integer')
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
  '0005_groups': {
    async up(db: Kysely<any>) {
      // A room's group (null: none), looked up by the group-calls query from the group's side.
      await db.schema.alterTable('rooms').addColumn('group_name', 'text').execute();
      await db.schema.createIndex('rooms_group_idx').on('rooms').columns(['service_id', 'group_name']).execute();
      // Who is in which group, kept by the apps through REST; read by user (a user's groups) and by group (its members).
      await db.schema
        .createTable('group_members')
        .addColumn('service_id', 'varchar(24)', (c) => c.notNull().references('services.id').onDelete('cascade'))
        .addColumn('group_name', 'text', (c) => c.notNull())
        .addColumn('user_name', 'text', (c) => c.notNull())
        .addColumn('added_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('group_members_pk', ['service_id', 'group_name', 'user_name'])
        .execute();
      await db.schema.createIndex('group_members_user_idx').on('group_members').columns(['service_id', 'user_name']).execute();
      // Who is in which room now, from the gateways' room events. No foreign keys, as the outbox: an event of a
      // room or tenant deleted meanwhile is kept (and never shown: the calls query joins the rooms) rather than
      // refused, which would stall its gateway's events.
      await db.schema
        .createTable('call_rooms')
        .addColumn('service_id', 'varchar(24)', (c) => c.notNull())
        .addColumn('room_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('gateway_id', 'text', (c) => c.notNull())
        .addColumn('started_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('call_rooms_pk', ['service_id', 'room_id'])
        .execute();
      await db.schema.createIndex('call_rooms_gateway_idx').on('call_rooms').column('gateway_id').execute();
      // A participant who left stays as a tombstone (left_at set) for a while: an older event replayed late
      // (a slow Nuve committing a batch the gateway had already resent elsewhere) cannot bring it back.
      await db.schema
        .createTable('call_participants')
        .addColumn('service_id', 'varchar(24)', (c) => c.notNull())
        .addColumn('room_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('participant_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('gateway_id', 'text', (c) => c.notNull())
        .addColumn('joined_at', 'bigint', (c) => c.notNull())
        .addColumn('left_at', 'bigint')
        .addColumn('event_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('call_participants_pk', ['service_id', 'room_id', 'participant_id'])
        .execute();
    },
  },
};

/**
 * Kysely's default table names: Nuve was the only role with tables when it
 * started recording migrations there, and existing databases must not run
 * them again.
 */
export const nuveMigrations: RoleMigrations = { table: 'kysely_migration', migrations };
