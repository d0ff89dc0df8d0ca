import { type Kysely, sql } from 'kysely';
import { type GroupCall, type GroupCallsResult, MAX_CALL_PARTICIPANTS, MAX_GROUP_CALLS } from '../../core/group-calls-protocol.js';
import type { RoomEvent } from '../../core/room-events.js';
import { QueryShapes, numberSlot, slot } from '../../core/query-shapes.js';
import type { NuveTables } from './schema.js';

/** The room events that change who is in a room. */
const PRESENCE_EVENTS = new Set<RoomEvent['type']>([
  'room_started',
  'room_finished',
  'participant_joined',
  'participant_left',
  'participant_connection_aborted',
  'participant_metadata_changed',
]);

type ParticipantRow = NuveTables['call_participants'];
type RoomRow = NuveTables['call_rooms'];
const PARTICIPANT_COLUMNS: readonly (keyof ParticipantRow)[] = ['service_id', 'room_id', 'participant_id', 'name', 'gateway_id', 'joined_at', 'left_at', 'event_at'];
const ROOM_COLUMNS: readonly (keyof RoomRow)[] = ['service_id', 'room_id', 'gateway_id', 'started_at'];

interface CallRow {
  group_count: number;
  room_id: string | null;
  room_name: string;
  group_name: string;
  since: number;
  participant_id: string;
  participant_name: string;
  joined_at: number;
  participant_count: number;
}

/**
 * Who is in which room now, kept from the room events the gateways commit (`nuve.room.events`), and
 * the calls of a user's groups read from it.
 *
 * Every write is conditional on the gateway's event time, so applying events is idempotent and an
 * old event arriving late changes nothing: a participant's row keeps the time of the latest event
 * applied to it (a join applies only when strictly newer, a leave when not older), a leaver stays as
 * a tombstone until pruned, and a room's end removes only what is not newer than it. Leaves and ends
 * touch only what the reporting gateway itself reported, so a room that moved to another gateway keeps
 * its new run whatever the old gateway reports late. A batch costs a
 * handful of statements in one transaction whatever its size: its events are folded per participant
 * and per room first (the last word per key, in the gateway's order).
 */
export class CallPresenceRepository {
  /** The batch's statements, compiled once per shape: building them cost more than running them. */
  private readonly shapes = new QueryShapes();

  constructor(private readonly db: Kysely<NuveTables>) {}

  async apply(gatewayId: string, events: RoomEvent[]): Promise<void> {
    const joins = new Map<string, ParticipantRow>();
    const leaves = new Map<string, ParticipantRow>();
    const renames: RoomEvent[] = [];
    const started = new Map<string, { service_id: string; room_id: string; gateway_id: string; started_at: number }>();
    const finished = new Map<string, { serviceId: string; roomId: string; at: number }>();
    for (const e of events) {
      if (!PRESENCE_EVENTS.has(e.type)) continue;
      const room = `${e.serviceId}\u0000${e.roomId}`;
      if (e.type === 'room_started') {
        if ((started.get(room)?.started_at ?? -1) < e.at) started.set(room, { service_id: e.serviceId, room_id: e.roomId, gateway_id: gatewayId, started_at: e.at });
        continue;
      }
      if (e.type === 'room_finished') {
        if ((finished.get(room)?.at ?? -1) < e.at) finished.set(room, { serviceId: e.serviceId, roomId: e.roomId, at: e.at });
        continue;
      }
      if (!e.participant) continue;
      const key = `${room}\u0000${e.participant.id}`;
      const row: ParticipantRow = {
        service_id: e.serviceId,
        room_id: e.roomId,
        participant_id: e.participant.id,
        name: e.participant.name,
        gateway_id: gatewayId,
        joined_at: e.at,
        left_at: null,
        event_at: e.at,
      };
      if (e.type === 'participant_joined') {
        leaves.delete(key);
        joins.set(key, row);
      } else if (e.type === 'participant_metadata_changed') {
        const joined = joins.get(key);
        if (joined) joined.name = e.participant.name;
        else if (!leaves.has(key)) renames.push(e);
      } else {
        joins.delete(key);
        leaves.set(key, { ...row, left_at: e.at });
      }
    }
    if (joins.size + leaves.size + renames.length + started.size + finished.size === 0) return;

    await this.db.transaction().execute(async (tx) => {
      // Starts first, ends last: a room that ended and started again within the batch keeps its new run.
      if (started.size > 0) {
        const rows = inKeyOrder(started);
        await this.shapes.run(tx, `start ${rows.length}`, flat(rows, ROOM_COLUMNS), () =>
          tx
            .insertInto('call_rooms')
            .values(unflat(rows.length, ROOM_COLUMNS))
            .onConflict((oc) =>
              oc
                .columns(['service_id', 'room_id'])
                .doUpdateSet((eb) => ({ started_at: eb.ref('excluded.started_at'), gateway_id: eb.ref('excluded.gateway_id') }))
                .where((eb) => eb('call_rooms.started_at', '<', eb.ref('excluded.started_at'))),
            ),
        );
        // A new run of the room: whoever this gateway still has there from before is a ghost of a run whose
        // end was never reported (the gateway restarted under the same id before the registry noticed).
        for (const s of started.values()) await endParticipants(this.shapes, tx, s.service_id, s.room_id, gatewayId, s.started_at, '<');
      }
      if (joins.size > 0) {
        const rows = inKeyOrder(joins);
        await this.shapes.run(tx, `join ${rows.length}`, flat(rows, PARTICIPANT_COLUMNS), () =>
          tx
            .insertInto('call_participants')
            .values(unflat(rows.length, PARTICIPANT_COLUMNS))
            .onConflict((oc) =>
              oc
                .columns(['service_id', 'room_id', 'participant_id'])
                .doUpdateSet((eb) => ({
                  name: eb.ref('excluded.name'),
                  gateway_id: eb.ref('excluded.gateway_id'),
                  joined_at: eb.ref('excluded.joined_at'),
                  // In the SQL, not a parameter: a shape's parameters are its slots only.
                  left_at: sql<null>`null`,
                  event_at: eb.ref('excluded.event_at'),
                }))
                .where((eb) => eb('call_participants.event_at', '<', eb.ref('excluded.event_at'))),
            ),
        );
        // A room whose room_started this Nuve never saw (its gateway's events before were lost) still has a start.
        const rooms = [
          ...new Map(
            rows.map((j) => [`${j.service_id}\u0000${j.room_id}`, { service_id: j.service_id, room_id: j.room_id, gateway_id: gatewayId, started_at: j.joined_at }]),
          ).values(),
        ];
        await this.shapes.run(tx, `join rooms ${rooms.length}`, flat(rooms, ROOM_COLUMNS), () =>
          tx
            .insertInto('call_rooms')
            .values(unflat(rooms.length, ROOM_COLUMNS))
            .onConflict((oc) => oc.columns(['service_id', 'room_id']).doNothing()),
        );
      }
      if (leaves.size > 0) {
        const rows = inKeyOrder(leaves);
        await this.shapes.run(tx, `leave ${rows.length}`, flat(rows, PARTICIPANT_COLUMNS), () =>
          tx
            .insertInto('call_participants')
            .values(unflat(rows.length, PARTICIPANT_COLUMNS))
            .onConflict((oc) =>
              oc
                .columns(['service_id', 'room_id', 'participant_id'])
                .doUpdateSet((eb) => ({ left_at: eb.ref('excluded.left_at'), event_at: eb.ref('excluded.event_at') }))
                // A peer joins and leaves through one gateway: another's leave is of a copy that is gone already.
                .where((eb) =>
                  eb.and([
                    eb('call_participants.event_at', '<=', eb.ref('excluded.event_at')),
                    eb('call_participants.gateway_id', '=', eb.ref('excluded.gateway_id')),
                  ]),
                ),
            ),
        );
      }
      for (const e of renames) {
        await this.shapes.run(tx, 'rename', [e.participant!.name, e.serviceId, e.roomId, e.participant!.id, e.at], () =>
          tx
            .updateTable('call_participants')
            .set({ name: slot(0) })
            .where('service_id', '=', slot(1))
            .where('room_id', '=', slot(2))
            .where('participant_id', '=', slot(3))
            .where('left_at', 'is', null)
            .where('event_at', '<=', numberSlot(4)),
        );
      }
      // A room's end is the end of this gateway's copy: another gateway hosting it now (the room moved while
      // this one was cut off) keeps its participants and its start.
      for (const f of finished.values()) {
        await endParticipants(this.shapes, tx, f.serviceId, f.roomId, gatewayId, f.at, '<=');
        await this.shapes.run(tx, 'finish', [f.serviceId, f.roomId, gatewayId, f.at], () =>
          tx
            .deleteFrom('call_rooms')
            .where('service_id', '=', slot(0))
            .where('room_id', '=', slot(1))
            .where('gateway_id', '=', slot(2))
            .where('started_at', '<=', numberSlot(3)),
        );
      }
    });
  }

  /**
   * The gateway is gone (Nuve's registry dropped it): whoever it reported is in no call any more.
   * Rows it reported that a later event moved to another gateway (the room reopened there) stay.
   * `left_at` takes this Nuve's time (for pruning); `event_at` stays the gateway's, so a rejoin
   * reported by the next gateway applies whatever the clocks say.
   */
  async clearGateway(gatewayId: string, now = Date.now()): Promise<number> {
    return this.db.transaction().execute(async (tx) => {
      const res = await tx
        .updateTable('call_participants')
        .set({ left_at: now })
        .where('gateway_id', '=', gatewayId)
        .where('left_at', 'is', null)
        .executeTakeFirst();
      await tx.deleteFrom('call_rooms').where('gateway_id', '=', gatewayId).execute();
      return Number(res.numUpdatedRows);
    });
  }

  /**
   * Forgets tombstones of participants who left before `before` (by then no late event of theirs is
   * still in flight), and the presence in rooms deleted since (rooms exist before their first event).
   */
  async prune(before: number): Promise<number> {
    return this.db.transaction().execute(async (tx) => {
      const res = await tx.deleteFrom('call_participants').where('left_at', '<', before).executeTakeFirst();
      const orphans = await tx
        .deleteFrom('call_participants as p')
        .where(({ not, exists, selectFrom }) =>
          not(exists(selectFrom('rooms as r').select('r.id').whereRef('r.id', '=', 'p.room_id').whereRef('r.service_id', '=', 'p.service_id'))),
        )
        .executeTakeFirst();
      await tx
        .deleteFrom('call_rooms as c')
        .where(({ not, exists, selectFrom }) =>
          not(exists(selectFrom('rooms as r').select('r.id').whereRef('r.id', '=', 'c.room_id').whereRef('r.service_id', '=', 'c.service_id'))),
        )
        .execute();
      return Number(res.numDeletedRows) + Number(orphans.numDeletedRows);
    });
  }

  /**
   * The calls going on in the user's groups, in one query: the user's groups ⋈ the tenant's rooms
   * of those groups ⋈ the participants in them now. At most MAX_GROUP_CALLS calls, the most
   * recently started first, each with its first MAX_CALL_PARTICIPANTS participants by join time
   * and the full count. Every join is on the tenant too: equal group names of two tenants never meet.
   * The calls are picked first (rooms with someone in them, by index), and only theirs have their
   * participants read and ranked. CROSS JOIN is SQLite's way to keep that order (the user's groups,
   * then their rooms, then participants by key): left to itself it may start from the tenant's whole
   * presence. PostgreSQL plans it as the inner join it is.
   */
  async callsOf(serviceId: string, userName: string): Promise<GroupCallsResult> {
    const { rows } = await sql<CallRow>`
      WITH mine AS (
        SELECT group_name FROM group_members WHERE service_id = ${serviceId} AND user_name = ${userName}
      ),
      calls AS (
        SELECT r.id AS room_id, r.name AS room_name, r.group_name AS group_name,
               COALESCE(c.started_at, (
                 SELECT MIN(f.joined_at) FROM call_participants f
                 WHERE f.service_id = r.service_id AND f.room_id = r.id AND f.left_at IS NULL
               )) AS since
        FROM mine m
        CROSS JOIN rooms r
        LEFT JOIN call_rooms c ON c.service_id = r.service_id AND c.room_id = r.id
        WHERE r.service_id = ${serviceId} AND r.group_name = m.group_name
          AND EXISTS (
            SELECT 1 FROM call_participants e WHERE e.service_id = r.service_id AND e.room_id = r.id AND e.left_at IS NULL
          )
        ORDER BY since DESC, room_id
        LIMIT ${sql.lit(MAX_GROUP_CALLS)}
      ),
      listed AS (
        SELECT k.room_id, k.room_name, k.group_name, k.since,
               p.participant_id AS participant_id, p.name AS participant_name, p.joined_at AS joined_at,
               ROW_NUMBER() OVER (PARTITION BY k.room_id ORDER BY p.joined_at, p.participant_id) AS position,
               COUNT(*) OVER (PARTITION BY k.room_id) AS participant_count
        FROM calls k
        CROSS JOIN call_participants p
        WHERE p.service_id = ${serviceId} AND p.room_id = k.room_id AND p.left_at IS NULL
      )
      SELECT g.group_count, x.room_id, x.room_name, x.group_name, x.since, x.participant_id, x.participant_name,
             x.joined_at, x.participant_count
      FROM (SELECT COUNT(*) AS group_count FROM mine) g
      LEFT JOIN listed x ON x.position <= ${sql.lit(MAX_CALL_PARTICIPANTS)}
      ORDER BY x.since DESC, x.room_id, x.position
    `.execute(this.db);
    const calls: GroupCall[] = [];
    for (const r of rows) {
      if (r.room_id === null) continue;
      let call = calls[calls.length - 1];
      if (call?.roomId !== r.room_id) {
        call = { roomId: r.room_id, roomName: r.room_name, group: r.group_name, since: Number(r.since), participants: [], participantCount: Number(r.participant_count) };
        calls.push(call);
      }
      call.participants.push({ id: r.participant_id, name: r.participant_name, since: Number(r.joined_at) });
    }
    return { groups: Number(rows[0]?.group_count ?? 0), calls };
  }
}

/** Rows by key: concurrent writers (a late Nuve and the current one) lock them in the same order, so never deadlock. */
function inKeyOrder<T>(rows: Map<string, T>): T[] {
  return [...rows.keys()].sort().map((key) => rows.get(key)!);
}

/**
 * Ends, at `at`, the participants `gatewayId` still has in a room whose events up to then say they were
 * there: before a new run of the room (`<`: a join at the very start belongs to the new run), or at its end
 * (`<=`: a join at the same instant ended with it).
 */
function endParticipants(
  shapes: QueryShapes,
  tx: Kysely<NuveTables>,
  serviceId: string,
  roomId: string,
  gatewayId: string,
  at: number,
  before: '<' | '<=',
): Promise<unknown> {
  return shapes.run(tx, `end ${before}`, [at, serviceId, roomId, gatewayId], () =>
    tx
      .updateTable('call_participants')
      .set({ left_at: numberSlot(0), event_at: numberSlot(0) })
      .where('service_id', '=', slot(1))
      .where('room_id', '=', slot(2))
      .where('gateway_id', '=', slot(3))
      .where('left_at', 'is', null)
      .where('event_at', before, numberSlot(0)),
  );
}

/** A batch's rows as one list of values, column by column in `columns` order, for a shape of that many rows. */
function flat<T>(rows: readonly T[], columns: readonly (keyof T)[]): unknown[] {
  return rows.flatMap((row) => columns.map((c) => row[c]));
}

/** `count` rows of slots for a shape, numbered as `flat` lists their values. */
function unflat<T>(count: number, columns: readonly (keyof T)[]): T[] {
  return Array.from({ length: count }, (_, r) => Object.fromEntries(columns.map((c, j) => [c, slot(r * columns.length + j)])) as T);
}
