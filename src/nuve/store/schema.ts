/** Tables of Nuve's store; the same on SQLite and PostgreSQL. Times are epoch milliseconds. */
export interface NuveTables {
  services: ServicesTable;
  rooms: RoomsTable;
  tokens: TokensTable;
  session_tokens: SessionTokensTable;
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
