/**
 * Roles and what they may do, in a module without zod so the browser SDK
 * reads permissions the same way. Nuve's configuration names the roles
 * (`nuve.roles`, as a Licode deployment defines its own), a token carries its
 * role's permissions under the tenant's signature, and gateways enforce the
 * permissions, never a role's name.
 */
export const PERMISSION_NAMES = [
  /** Send audio and video (produce; a broadcaster's ingest). */
  'publish',
  /** Receive the others' audio, video and data (the gateway offers consumers). */
  'subscribe',
  /** Send on data channels (produceData). */
  'publishData',
  /** Stream the room's producers out over plain RTP (a broadcaster's consume: recording, restreaming). */
  'record',
] as const;
export type PermissionName = (typeof PERMISSION_NAMES)[number];
export type Permissions = Record<PermissionName, boolean>;

/** The roles every Nuve knows; `nuve.roles` adds others and may redefine these. */
export const DEFAULT_ROLES: Readonly<Record<string, Permissions>> = {
  presenter: { publish: true, subscribe: true, publishData: true, record: true },
  viewer: { publish: false, subscribe: true, publishData: false, record: false },
};

const NOTHING: Permissions = { publish: false, subscribe: false, publishData: false, record: false };

/**
 * What a token or grant lets its holder do. One without permissions comes from a Nuve older than
 * them (during a rolling upgrade), which knew only presenter and viewer, as they still are by default.
 */
export function grantedPermissions(grant: { role: string; permissions?: Permissions | undefined }): Permissions {
  return grant.permissions ?? (Object.hasOwn(DEFAULT_ROLES, grant.role) ? DEFAULT_ROLES[grant.role]! : NOTHING);
}

/**
 * What a session may use over its connection, each a set of client methods: `room` the room
 * signaling (a session has it exactly when it has a room), `push` acknowledging pushes, `rpc`
 * calling the tenant's services. A room token's session has `room` only.
 */
export const SESSION_SCOPES = ['room', 'push', 'rpc'] as const;
export type SessionScope = (typeof SESSION_SCOPES)[number];
