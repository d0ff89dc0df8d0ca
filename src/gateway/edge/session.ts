import type { SessionGrant, TokenGrant } from '../../core/subjects.js';
import type { SessionScope } from '../../protocol/permissions.js';

/**
 * Who is on a connection, as its token proved it: a user of a tenant (the
 * service id: user names are the tenant's own), what it may use (scopes), and
 * the room it may enter, if any. One per connection, fixed at admission;
 * channels decide on it, never on anything the client sends later.
 */
export interface Session {
  readonly serviceId: string;
  readonly userName: string;
  readonly scopes: ReadonlySet<SessionScope>;
  /** The room and role a room token, or a session token naming a room, grants. */
  readonly room?: TokenGrant;
}

/** The session a consumed token opens: a room token's is its room and the `room` scope. */
export function sessionOf(grant: TokenGrant | SessionGrant): Session {
  if ('kind' in grant) {
    return {
      serviceId: grant.serviceId,
      userName: grant.userName,
      scopes: new Set(grant.scopes),
      ...(grant.room && { room: grant.room }),
    };
  }
  return { serviceId: grant.serviceId, userName: grant.userName, scopes: new Set(['room']), room: grant };
}
