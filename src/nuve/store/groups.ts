import type { Kysely } from 'kysely';
import type { NuveTables } from './schema.js';

/** One page of a keyset listing: `next` is the value to pass as `after` for the following page (absent: the last page). */
export interface Page<T> {
  items: T[];
  next?: string;
}

export interface GroupMember {
  user: string;
  addedAt: number;
}

/**
 * Group membership: which users of a tenant are in which group. A group exists through its members
 * and the rooms naming it; every query is scoped by the tenant, so equal group names of two tenants
 * never meet. Pages are keyset (by name, after the last one seen): stable while members come and go.
 */
export class GroupRepository {
  constructor(private readonly db: Kysely<NuveTables>) {}

  /** Adds the users (already members are left as they are); answers how many were new. */
  async addMembers(serviceId: string, group: string, users: string[], now = Date.now()): Promise<number> {
    const unique = [...new Set(users)];
    if (unique.length === 0) return 0;
    const res = await this.db
      .insertInto('group_members')
      .values(unique.map((user) => ({ service_id: serviceId, group_name: group, user_name: user, added_at: now })))
      .onConflict((oc) => oc.columns(['service_id', 'group_name', 'user_name']).doNothing())
      .executeTakeFirst();
    return Number(res.numInsertedOrUpdatedRows ?? 0);
  }

  /** Removes the users that are members; answers how many were. */
  async removeMembers(serviceId: string, group: string, users: string[]): Promise<number> {
    if (users.length === 0) return 0;
    const res = await this.db
      .deleteFrom('group_members')
      .where('service_id', '=', serviceId)
      .where('group_name', '=', group)
      .where('user_name', 'in', [...new Set(users)])
      .executeTakeFirst();
    return Number(res.numDeletedRows);
  }

  async members(serviceId: string, group: string, limit: number, after?: string): Promise<Page<GroupMember>> {
    let q = this.db
      .selectFrom('group_members')
      .select(['user_name', 'added_at'])
      .where('service_id', '=', serviceId)
      .where('group_name', '=', group)
      .orderBy('user_name')
      .limit(limit + 1);
    if (after !== undefined) q = q.where('user_name', '>', after);
    const rows = await q.execute();
    return page(
      rows.map((r) => ({ user: r.user_name, addedAt: r.added_at })),
      limit,
      (m) => m.user,
    );
  }

  async groupsOf(serviceId: string, user: string, limit: number, after?: string): Promise<Page<string>> {
    let q = this.db
      .selectFrom('group_members')
      .select('group_name')
      .where('service_id', '=', serviceId)
      .where('user_name', '=', user)
      .orderBy('group_name')
      .limit(limit + 1);
    if (after !== undefined) q = q.where('group_name', '>', after);
    const rows = await q.execute();
    return page(
      rows.map((r) => r.group_name),
      limit,
      (g) => g,
    );
  }

  /** Removes every member and takes the group off its rooms (the rooms stay); undefined when there was neither. */
  async deleteGroup(serviceId: string, group: string): Promise<{ members: number; rooms: number } | undefined> {
    const { members, rooms } = await this.db.transaction().execute(async (tx) => {
      const removed = await tx.deleteFrom('group_members').where('service_id', '=', serviceId).where('group_name', '=', group).executeTakeFirst();
      const detached = await tx
        .updateTable('rooms')
        .set({ group_name: null })
        .where('service_id', '=', serviceId)
        .where('group_name', '=', group)
        .executeTakeFirst();
      return { members: Number(removed.numDeletedRows), rooms: Number(detached.numUpdatedRows) };
    });
    return members + rooms === 0 ? undefined : { members, rooms };
  }
}

/** `rows` holds up to limit + 1: the extra one only says there is a next page. */
function page<T>(rows: T[], limit: number, key: (item: T) => string): Page<T> {
  if (rows.length <= limit) return { items: rows };
  const items = rows.slice(0, limit);
  return { items, next: key(items[items.length - 1]!) };
}
