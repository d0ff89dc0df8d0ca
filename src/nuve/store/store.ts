import { type Kysely, sql } from 'kysely';
import { type Database, type DatabaseOptions, openDatabase, reportingUnavailable } from '../../core/database.js';
import { reusable, slot } from '../../core/query-shapes.js';
import type { EaPolicy } from '../../core/subjects.js';
import { nuveMigrations } from './migrations.js';
import type { NuveTables } from './schema.js';
import { CallPresenceRepository } from './call-presence.js';
import { GroupRepository } from './groups.js';
import { TenantSettingsRepository } from './tenant-settings.js';
import { WebhookRepository } from '../webhooks/repository.js';

export type { EaPolicy };

export interface ServiceRecord {
  id: string;
  name: string;
  key: string;
  isSuper: boolean;
  createdAt: number;
}

export interface RoomRecord {
  id: string;
  serviceId: string;
  name: string;
  data: unknown;
  p2p: boolean;
  mediaConfiguration: string | null;
  eapolicy: EaPolicy;
  gatewayId: string | null;
  createdAt: number;
  /** The room's group within its tenant (absent: none): the group's members hear of its calls. */
  group?: string;
}

export interface TokenRecord {
  id: string;
  serviceId: string;
  roomId: string;
  userName: string;
  role: string;
  gatewayId: string;
  eapolicy: EaPolicy;
  expiresAt: number;
  createdAt: number;
}

/** A session token's record: a user of a tenant, its scopes, and the room and role it names, if any. */
export interface SessionTokenRecord {
  id: string;
  serviceId: string;
  userName: string;
  scopes: string[];
  roomId: string | null;
  role: string | null;
  gatewayId: string;
  expiresAt: number;
  createdAt: number;
}

export type RoomChanges = Partial<Pick<RoomRecord, 'name' | 'data' | 'p2p' | 'mediaConfiguration' | 'eapolicy'>> & {
  /** A group, or null for none. */
  group?: string | null;
};

/**
 * Nuve's persistent state. One implementation over Kysely; the engine is the
 * only difference between embedded (SQLite) and cluster (PostgreSQL). Every
 * room and token query is scoped by service id: tenants never see each other.
 */
export interface Store {
  readonly engine: 'sqlite' | 'postgres';
  /** Webhook endpoints and the events' outbox. */
  readonly webhooks: WebhookRepository;
  /** What each tenant decides for itself (remote unmute). */
  readonly settings: TenantSettingsRepository;
  /** Group membership, kept by the apps. */
  readonly groups: GroupRepository;
  /** Who is in which room now (from the room events) and the calls of a user's groups. */
  readonly calls: CallPresenceRepository;
  createService(service: ServiceRecord): Promise<void>;
  getService(id: string): Promise<ServiceRecord | undefined>;
  listServices(): Promise<ServiceRecord[]>;
  findSuperService(): Promise<ServiceRecord | undefined>;
  updateServiceKey(id: string, key: string): Promise<void>;
  /** Removes the service with its rooms and tokens; false when it did not exist. */
  deleteService(id: string): Promise<boolean>;

  createRoom(room: RoomRecord): Promise<void>;
  getRoom(serviceId: string, roomId: string): Promise<RoomRecord | undefined>;
  listRooms(serviceId: string): Promise<RoomRecord[]>;
  updateRoom(serviceId: string, roomId: string, changes: RoomChanges): Promise<boolean>;
  deleteRoom(serviceId: string, roomId: string): Promise<boolean>;
  /**
   * Compare-and-set of the room's gateway: sets `next` only while the room
   * still has `expected`. Returns the gateway the room has afterwards, so two
   * Nuve instances racing on a new room agree on one gateway.
   */
  assignGateway(roomId: string, expected: string | null, next: string): Promise<string | null>;
  /** Forgets the gateway of every room it hosted (the gateway is gone). */
  releaseGateway(gatewayId: string): Promise<number>;

  createToken(token: TokenRecord): Promise<void>;
  /** Atomically removes and returns the token: a second consume of the same id gets undefined. */
  consumeToken(id: string): Promise<TokenRecord | undefined>;
  createSessionToken(token: SessionTokenRecord): Promise<void>;
  /** Atomically removes and returns the session token: a second consume of the same id gets undefined. */
  consumeSessionToken(id: string): Promise<SessionTokenRecord | undefined>;
  /** Removes expired room and session tokens. */
  deleteExpiredTokens(now: number): Promise<number>;

  ping(): Promise<void>;
  /** Writes the pending tokens; ends the database too when this store opened it. */
  close(): Promise<void>;
}

/**
 * Nuve's repositories on the process's database, after bringing Nuve's tables
 * up to date. The store does not end the database unless it opened it
 * (`openStore`): in a platform, the database outlives every role using it.
 */
export async function openNuveStore(database: Database, ownsDatabase = false): Promise<Store> {
  try {
    await database.migrate(nuveMigrations);
  } catch (err) {
    if (ownsDatabase) await database.close();
    throw err;
  }
  return reportingUnavailable(new KyselyStore(database.kysely<NuveTables>(), database.engine, ownsDatabase ? () => database.close() : undefined));
}

/** A store with a database of its own (tools, tests): closing the store ends it. */
export async function openStore(options: DatabaseOptions): Promise<Store> {
  return openNuveStore(await openDatabase(options), true);
}

type RoomRow = NuveTables['rooms'];
type TokenRow = NuveTables['tokens'];
type ServiceRow = NuveTables['services'];

const toService = (r: ServiceRow): ServiceRecord => ({
  id: r.id,
  name: r.name,
  key: r.key,
  isSuper: r.is_super === 1,
  createdAt: r.created_at,
});

const toRoom = (r: RoomRow): RoomRecord => ({
  id: r.id,
  serviceId: r.service_id,
  name: r.name,
  data: r.data === null ? undefined : JSON.parse(r.data),
  p2p: r.p2p === 1,
  mediaConfiguration: r.media_configuration,
  eapolicy: r.eapolicy as EaPolicy,
  gatewayId: r.gateway_id,
  createdAt: r.created_at,
  ...(r.group_name !== null && { group: r.group_name }),
});

const toToken = (r: TokenRow): TokenRecord => ({
  id: r.id,
  serviceId: r.service_id,
  roomId: r.room_id,
  userName: r.user_name,
  role: r.role,
  gatewayId: r.gateway_id,
  eapolicy: r.eapolicy as EaPolicy,
  expiresAt: r.expires_at,
  createdAt: r.created_at,
});

interface PendingToken {
  row: TokenRow;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Rows per multi-row INSERT on SQLite: 9 parameters each stays far below its limit. */
const TOKEN_BATCH_MAX = 200;
/** Rows per INSERT on PostgreSQL, where a batch is 9 array parameters whatever its size. */
const PG_TOKEN_BATCH_MAX = 1000;
/**
 * Token INSERTs in flight at once. Rows arriving while they run wait and go out together when one
 * ends: under load, fewer and larger statements (one parse, one commit and WAL flush for the lot),
 * at most one statement's time of extra wait; alone, a row goes at once as before.
 */
const TOKEN_WRITES_IN_FLIGHT = 2;

const toTokenRow = (t: TokenRecord): TokenRow => ({
  id: t.id,
  service_id: t.serviceId,
  room_id: t.roomId,
  user_name: t.userName,
  role: t.role,
  gateway_id: t.gatewayId,
  eapolicy: t.eapolicy,
  expires_at: t.expiresAt,
  created_at: t.createdAt,
});

class KyselyStore implements Store {
  private readonly tokenQueue: PendingToken[] = [];
  private readonly pendingWrites = new Set<Promise<void>>();
  private readonly queries;
  readonly webhooks: WebhookRepository;
  readonly settings: TenantSettingsRepository;
  readonly groups: GroupRepository;
  readonly calls: CallPresenceRepository;

  constructor(
    private readonly db: Kysely<NuveTables>,
    readonly engine: 'sqlite' | 'postgres',
    /** Ends the database when this store owns it. */
    private readonly release?: () => Promise<void>,
  ) {
    this.webhooks = reportingUnavailable(new WebhookRepository(db, engine));
    this.settings = reportingUnavailable(new TenantSettingsRepository(db));
    this.groups = reportingUnavailable(new GroupRepository(db));
    this.calls = reportingUnavailable(new CallPresenceRepository(db));
    // The hot reads: every token request reads its room; every authenticated request may read its service.
    this.queries = {
      getService: reusable(db.selectFrom('services').selectAll().where('id', '=', slot(0)).compile()),
      // Once per join.
      consumeToken: reusable(db.deleteFrom('tokens').where('id', '=', slot(0)).returningAll().compile()),
      getRoom: reusable(
        db.selectFrom('rooms').selectAll().where('id', '=', slot(0)).where('service_id', '=', slot(1)).compile(),
      ),
      // One statement text for any batch size: PostgreSQL parses 9 arrays instead of 9 parameters a row.
      insertTokensPg: reusable(
        sql`insert into tokens (id, service_id, room_id, user_name, role, gateway_id, eapolicy, expires_at, created_at)
          select * from unnest(${slot(0)}::varchar[], ${slot(1)}::varchar[], ${slot(2)}::varchar[], ${slot(3)}::text[],
            ${slot(4)}::text[], ${slot(5)}::text[], ${slot(6)}::text[], ${slot(7)}::bigint[], ${slot(8)}::bigint[])`.compile(db),
      ),
    };
  }

  async createService(s: ServiceRecord): Promise<void> {
    await this.db
      .insertInto('services')
      .values({ id: s.id, name: s.name, key: s.key, is_super: s.isSuper ? 1 : 0, created_at: s.createdAt })
      .execute();
  }

  async getService(id: string): Promise<ServiceRecord | undefined> {
    const [row] = (await this.db.executeQuery(this.queries.getService(id))).rows;
    return row && toService(row);
  }

  async listServices(): Promise<ServiceRecord[]> {
    const rows = await this.db.selectFrom('services').selectAll().orderBy('created_at').orderBy('id').execute();
    return rows.map(toService);
  }

  async findSuperService(): Promise<ServiceRecord | undefined> {
    const row = await this.db.selectFrom('services').selectAll().where('is_super', '=', 1).executeTakeFirst();
    return row && toService(row);
  }

  async updateServiceKey(id: string, key: string): Promise<void> {
    await this.db.updateTable('services').set({ key }).where('id', '=', id).execute();
  }

  async deleteService(id: string): Promise<boolean> {
    return this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('tokens').where('service_id', '=', id).execute();
      await tx.deleteFrom('rooms').where('service_id', '=', id).execute();
      const res = await tx.deleteFrom('services').where('id', '=', id).executeTakeFirst();
      return Number(res.numDeletedRows) > 0;
    });
  }

  async createRoom(r: RoomRecord): Promise<void> {
    await this.db
      .insertInto('rooms')
      .values({
        id: r.id,
        service_id: r.serviceId,
        name: r.name,
        data: r.data === undefined ? null : JSON.stringify(r.data),
        p2p: r.p2p ? 1 : 0,
        media_configuration: r.mediaConfiguration,
        eapolicy: r.eapolicy,
        gateway_id: r.gatewayId,
        created_at: r.createdAt,
        group_name: r.group ?? null,
      })
      .execute();
  }

  async getRoom(serviceId: string, roomId: string): Promise<RoomRecord | undefined> {
    const [row] = (await this.db.executeQuery(this.queries.getRoom(roomId, serviceId))).rows;
    return row && toRoom(row);
  }

  async listRooms(serviceId: string): Promise<RoomRecord[]> {
    const rows = await this.db
      .selectFrom('rooms')
      .selectAll()
      .where('service_id', '=', serviceId)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(toRoom);
  }

  async updateRoom(serviceId: string, roomId: string, c: RoomChanges): Promise<boolean> {
    const values: Partial<RoomRow> = {};
    if (c.name !== undefined) values.name = c.name;
    if ('data' in c) values.data = c.data === undefined ? null : JSON.stringify(c.data);
    if (c.p2p !== undefined) values.p2p = c.p2p ? 1 : 0;
    if (c.mediaConfiguration !== undefined) values.media_configuration = c.mediaConfiguration;
    if (c.eapolicy !== undefined) values.eapolicy = c.eapolicy;
    if (c.group !== undefined) values.group_name = c.group;
    if (Object.keys(values).length === 0) return (await this.getRoom(serviceId, roomId)) !== undefined;
    const res = await this.db
      .updateTable('rooms')
      .set(values)
      .where('id', '=', roomId)
      .where('service_id', '=', serviceId)
      .executeTakeFirst();
    return Number(res.numUpdatedRows) > 0;
  }

  async deleteRoom(serviceId: string, roomId: string): Promise<boolean> {
    return this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('tokens').where('room_id', '=', roomId).where('service_id', '=', serviceId).execute();
      await tx.deleteFrom('webhooks').where('room_id', '=', roomId).where('service_id', '=', serviceId).execute();
      const res = await tx
        .deleteFrom('rooms')
        .where('id', '=', roomId)
        .where('service_id', '=', serviceId)
        .executeTakeFirst();
      return Number(res.numDeletedRows) > 0;
    });
  }

  async assignGateway(roomId: string, expected: string | null, next: string): Promise<string | null> {
    await this.db
      .updateTable('rooms')
      .set({ gateway_id: next })
      .where('id', '=', roomId)
      .where((eb) => (expected === null ? eb('gateway_id', 'is', null) : eb('gateway_id', '=', expected)))
      .execute();
    const row = await this.db.selectFrom('rooms').select('gateway_id').where('id', '=', roomId).executeTakeFirst();
    return row?.gateway_id ?? null;
  }

  async releaseGateway(gatewayId: string): Promise<number> {
    const res = await this.db
      .updateTable('rooms')
      .set({ gateway_id: null })
      .where('gateway_id', '=', gatewayId)
      .executeTakeFirst();
    return Number(res.numUpdatedRows);
  }

  /**
   * Tokens are the hot write (one per join). Inserts arriving in the same
   * turn of the event loop are written as one multi-row INSERT: one commit
   * (one WAL append or one PostgreSQL round trip and fsync) for the lot. Each
   * caller still resolves only once its row is committed.
   */
  createToken(t: TokenRecord): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.tokenQueue.push({ row: toTokenRow(t), resolve, reject });
      if (this.tokenQueue.length === 1) setImmediate(() => this.flushTokens());
    });
  }

  private flushTokens(all = false): void {
    const max = this.engine === 'postgres' ? PG_TOKEN_BATCH_MAX : TOKEN_BATCH_MAX;
    while (this.tokenQueue.length > 0 && (all || this.pendingWrites.size < TOKEN_WRITES_IN_FLIGHT)) {
      const batch = this.tokenQueue.splice(0, max);
      const work = this.insertTokens(batch);
      this.pendingWrites.add(work);
      void work.finally(() => {
        this.pendingWrites.delete(work);
        this.flushTokens();
      });
    }
  }

  private async insertTokens(batch: PendingToken[]): Promise<void> {
    try {
      if (this.engine === 'postgres' && batch.length > 1) {
        const column = <K extends keyof TokenRow>(key: K) => batch.map((p) => p.row[key]);
        await this.db.executeQuery(
          this.queries.insertTokensPg(
            column('id'),
            column('service_id'),
            column('room_id'),
            column('user_name'),
            column('role'),
            column('gateway_id'),
            column('eapolicy'),
            column('expires_at'),
            column('created_at'),
          ),
        );
      } else {
        await this.db.insertInto('tokens').values(batch.map((p) => p.row)).execute();
      }
      for (const p of batch) p.resolve();
    } catch (err) {
      if (batch.length === 1) return batch[0]!.reject(err);
      // One bad row (say, its room was just deleted) fails the statement: retry singly so only that one fails.
      await Promise.all(batch.map((p) => this.insertTokens([p])));
    }
  }

  async consumeToken(id: string): Promise<TokenRecord | undefined> {
    const { rows } = await this.db.executeQuery(this.queries.consumeToken(id));
    return rows[0] && toToken(rows[0]);
  }

  async createSessionToken(t: SessionTokenRecord): Promise<void> {
    await this.db
      .insertInto('session_tokens')
      .values({
        id: t.id,
        service_id: t.serviceId,
        user_name: t.userName,
        scopes: t.scopes.join(','),
        room_id: t.roomId,
        role: t.role,
        gateway_id: t.gatewayId,
        expires_at: t.expiresAt,
        created_at: t.createdAt,
      })
      .execute();
  }

  async consumeSessionToken(id: string): Promise<SessionTokenRecord | undefined> {
    const r = await this.db.deleteFrom('session_tokens').where('id', '=', id).returningAll().executeTakeFirst();
    return (
      r && {
        id: r.id,
        serviceId: r.service_id,
        userName: r.user_name,
        scopes: r.scopes.split(','),
        roomId: r.room_id,
        role: r.role,
        gatewayId: r.gateway_id,
        expiresAt: r.expires_at,
        createdAt: r.created_at,
      }
    );
  }

  async deleteExpiredTokens(now: number): Promise<number> {
    const res = await this.db.deleteFrom('tokens').where('expires_at', '<', now).executeTakeFirst();
    const sessions = await this.db.deleteFrom('session_tokens').where('expires_at', '<', now).executeTakeFirst();
    return Number(res.numDeletedRows) + Number(sessions.numDeletedRows);
  }

  async ping(): Promise<void> {
    await sql`SELECT 1`.execute(this.db);
  }

  async close(): Promise<void> {
    this.flushTokens(true);
    await Promise.allSettled([...this.pendingWrites]);
    await this.release?.();
  }
}
