import { z } from 'zod';
import { permissionsSchema, roleNameSchema, sessionScopesSchema } from './grant-schemas.js';
import { boundedJson } from './bounded-json.js';

/**
 * Bus subjects and message schemas shared by the roles: the only contract
 * between them. Every role validates what it receives against these.
 */
export const subjects = {
  /** gateway → every Nuve (publish): registration and keepalive. */
  gatewayHeartbeat: 'gateway.heartbeat',
  /** gateway → every Nuve (publish): clean shutdown, forget me now. */
  gatewayDown: 'gateway.down',
  /** Nuve → every gateway (publish): a Nuve started; announce yourselves now. */
  nuveHello: 'nuve.hello',
  /** gateway → one Nuve (request, queue "nuve"): verify and consume a one-time token. */
  tokenConsume: 'nuve.token.consume',
  /** Nuve → one gateway (request): room/user queries and commands. */
  gatewayRpc: (gatewayId: string) => `gateway.${gatewayId}.rpc`,
  /** gateway → one Nuve (request, queue "nuve"): room events (`room-events.ts`), acknowledged once in Nuve's outbox. */
  roomEvents: 'nuve.room.events',
} as const;

export const NUVE_QUEUE = 'nuve';

export const gatewayStateSchema = z.enum(['available', 'draining']);
export type GatewayState = z.infer<typeof gatewayStateSchema>;

export const gatewayHeartbeatSchema = z.object({
  id: z.string().min(1).max(200),
  url: z.string().url(),
  weight: z.number().positive().max(1000),
  state: gatewayStateSchema,
  rooms: z.number().int().nonnegative(),
  peers: z.number().int().nonnegative(),
});
export type GatewayHeartbeat = z.infer<typeof gatewayHeartbeatSchema>;

export const tokenConsumeRequestSchema = z.object({
  token: z.string().min(1).max(4096),
  gatewayId: z.string().min(1).max(200),
});

export const eaPolicySchema = z.enum(['ROOM-BEST', 'TTL-BEST']);
/** How a room's peers are placed on agents: chosen at Nuve, carried in tokens, applied by the gateway. */
export type EaPolicy = z.infer<typeof eaPolicySchema>;

/** What a gateway learns from a consumed token. */
export const tokenGrantSchema = z.object({
  tokenId: z.string(),
  serviceId: z.string(),
  roomId: z.string(),
  roomName: z.string(),
  userName: z.string(),
  role: roleNameSchema,
  /** What the token lets its holder do; absent from Nuves older than it (only presenter and viewer existed). */
  permissions: permissionsSchema.optional(),
  eapolicy: eaPolicySchema,
});
export type TokenGrant = z.infer<typeof tokenGrantSchema>;

/**
 * What a gateway learns from a consumed session token: a user of a tenant, its scopes, and the
 * room grant when it names a room (the same a room token gives). A room token answers a TokenGrant.
 */
export const sessionGrantSchema = z.object({
  kind: z.literal('session'),
  tokenId: z.string(),
  serviceId: z.string(),
  userName: z.string(),
  scopes: sessionScopesSchema,
  room: tokenGrantSchema.optional(),
});
export type SessionGrant = z.infer<typeof sessionGrantSchema>;

/** `nuve.token.consume`'s answer, whichever kind the token was. */
export const consumedGrantSchema = z.union([sessionGrantSchema, tokenGrantSchema]);

export const userSchema = z.object({
  name: z.string(),
  role: roleNameSchema,
  permissions: z.record(z.string(), z.boolean()),
});
export type RoomUser = z.infer<typeof userSchema>;

/** Metadata an app attaches to a participant or a room: shown to every peer, so bounded well below a room's `data`. */
export const participantMetadataSchema = boundedJson({ maxDepth: 6, maxNodes: 256, maxStringLength: 1024 });

/** What the app may change of a connected participant; at least one thing. */
export const participantChangesSchema = z
  .object({
    name: z
      .string()
      .trim()
      .min(1)
      .max(128)
      .refine((name) => !/[\u0000-\u001f\u007f]/.test(name), 'must not contain control characters')
      .optional(),
    metadata: participantMetadataSchema.optional(),
    permissions: permissionsSchema.pick({ publish: true, subscribe: true, publishData: true }).partial().strict().optional(),
  })
  .strict()
  .refine((c) => c.name !== undefined || c.metadata !== undefined || c.permissions !== undefined, 'nothing to change');
export type ParticipantChanges = z.infer<typeof participantChangesSchema>;

/** Data the app sends into a room, to everyone joined or to the participants named. */
export const roomDataSchema = z
  .object({
    topic: z.string().min(1).max(128),
    payload: boundedJson({ maxDepth: 6, maxNodes: 1000, maxStringLength: 16_384 }),
    participants: z.array(z.string().min(1).max(64)).min(1).max(1000).optional(),
  })
  .strict();
export type RoomData = z.infer<typeof roomDataSchema>;

/** A participant as the room API shows it. */
export interface ParticipantView {
  id: string;
  identity: string;
  name: string;
  role: string;
  joined: boolean;
  metadata?: unknown;
  permissions: { publish: boolean; subscribe: boolean; publishData: boolean };
  tracks: { id: string; kind: 'audio' | 'video'; muted: boolean }[];
}

export const gatewayRpcSchema = z.discriminatedUnion('method', [
  z.object({ method: z.literal('listUsers'), roomId: z.string() }),
  z.object({ method: z.literal('kickUser'), roomId: z.string(), userName: z.string() }),
  z.object({ method: z.literal('closeRoom'), roomId: z.string() }),
  // The room API (src/nuve/routes/participants.ts): participants by peer id, tracks by producer id.
  z.object({ method: z.literal('listParticipants'), roomId: z.string() }),
  z.object({ method: z.literal('updateParticipant'), roomId: z.string(), peerId: z.string(), changes: participantChangesSchema }),
  z.object({ method: z.literal('setTrackMuted'), roomId: z.string(), peerId: z.string(), trackId: z.string(), muted: z.boolean() }),
  z.object({ method: z.literal('sendData'), roomId: z.string(), data: roomDataSchema }),
  z.object({ method: z.literal('setRoomMetadata'), roomId: z.string(), metadata: boundedJson() }),
]);
export type GatewayRpc = z.infer<typeof gatewayRpcSchema>;
