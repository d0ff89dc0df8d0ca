import type { Generated } from 'kysely';

/** Tables of Nuve's store; the same on SQLite and PostgreSQL. Times are epoch milliseconds. */
export interface NuveTables {
  services: ServicesTable;
  rooms: RoomsTable;
  tokens: TokensTable;
  session_tokens: SessionTokensTable;
  webhooks: WebhooksTable;
  webhook_outbox: WebhookOutboxTable;
  tenant_settings: TenantSettingsTable;
  group_members: GroupMembersTable;
  call_rooms: CallRoomsTable;
  call_participants: CallParticipantsTable;
}

export interface GroupMembersTable {
  service_id: string;
  group_name: string;
  user_name: string;
  added_at: number;
}

/** A room with a call going on (or whose end has not been reported yet), by the gateway that reported it. */
export interface CallRoomsTable {
  service_id: string;
  room_id: string;
  gateway_id: string;
  /** The gateway's time of the room's room_started (of this run). */
  started_at: number;
}

export interface CallParticipantsTable {
  service_id: string;
  room_id: string;
  /** The peer id. */
  participant_id: string;
  /** Its display name. */
  name: string;
  gateway_id: string;
  joined_at: number;
  /** Null while in the room; set when it left (a tombstone, pruned after a while). */
  left_at: number | null;
  /** The gateway's time of the latest event applied to this row: older ones arriving late are ignored. */
  event_at: number;
}

export interface TenantSettingsTable {
  service_id: string;
  /** 1 allowed, 0 refused, null: the platform's default (nuve.allowRemoteUnmute). */
  allow_remote_unmute: number | null;
  updated_at: number;
}

export interface WebhooksTable {
  service_id: string;
  /** '' for the tenant's URL; a room id for that room's. */
  room_id: string;
  url: string;
  /** JSON arrays of event types, or null (include: every type; exclude: none). */
  include_events: string | null;
  exclude_events: string | null;
  created_at: number;
}

export interface WebhookOutboxTable {
  seq: Generated<number>;
  event_id: string;
  service_id: string;
  room_id: string;
  type: string;
  /** The JSON body delivered, as signed. */
  body: string;
  created_at: number;
  state: 'pending' | 'failed';
  attempts: number;
  next_attempt_at: number;
  lease_owner: string | null;
  lease_until: number | null;
  last_error: string | null;
  failed_at: number | null;
}

export interface ServicesTable {
  id: string;
  name: string;
  key: string;
  is_super: number;
  created_at: number;
}

export interface RoomsTable {
  id: string;
  service_id: string;
  name: string;
  /** JSON text of the room's free-form `data`, or null. */
  data: string | null;
  p2p: number;
  media_configuration: string | null;
  eapolicy: string;
  /** The gateway that hosts the room while it lives; cleared when that gateway goes away. */
  gateway_id: string | null;
  created_at: number;
  /** The room's group within its tenant, or null. */
  group_name: string | null;
}

export interface SessionTokensTable {
  id: string;
  service_id: string;
  user_name: string;
  /** Its scopes, comma-separated. */
  scopes: string;
  room_id: string | null;
  role: string | null;
  gateway_id: string;
  expires_at: number;
  created_at: number;
}

export interface TokensTable {
  id: string;
  service_id: string;
  room_id: string;
  user_name: string;
  role: string;
  gateway_id: string;
  eapolicy: string;
  expires_at: number;
  created_at: number;
}
