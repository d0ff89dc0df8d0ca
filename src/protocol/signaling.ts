import { z } from 'zod';
import {
  appDataSchema,
  deviceSchema,
  displayNameSchema,
  dtlsParametersSchema,
  rtpCapabilitiesSchema,
  rtpParametersSchema,
  sctpCapabilitiesSchema,
  sctpStreamParametersSchema,
  text,
} from './media-parameters.js';

/**
 * The client ↔ gateway signaling protocol (protoo wire format, mediasoup-demo
 * methods). The gateway validates with these schemas and the browser SDK is
 * typed by them: one source of truth.
 */
export const protooRequestSchema = z.object({
  request: z.literal(true),
  id: z.number().int().nonnegative(),
  method: z.string().min(1).max(64),
  data: z.unknown().optional(),
});

export const protooResponseSchema = z.union([
  z.object({ response: z.literal(true), id: z.number().int(), ok: z.literal(true), data: z.unknown().optional() }),
  z.object({
    response: z.literal(true),
    id: z.number().int(),
    ok: z.literal(false),
    errorCode: z.number().int(),
    errorReason: z.string(),
  }),
]);

export const protooNotificationSchema = z.object({
  notification: z.literal(true),
  method: z.string().min(1).max(64),
  data: z.unknown().optional(),
});

export const protooMessageSchema = z.union([protooRequestSchema, protooResponseSchema, protooNotificationSchema]);
export type ProtooRequest = z.infer<typeof protooRequestSchema>;
export type ProtooMessage = z.infer<typeof protooMessageSchema>;

const id = z.string().min(1).max(128);

/** Client → gateway requests and their data. */
export const clientRequestSchemas = {
  /**
   * TTL-BEST rooms: the agents this client may measure its round-trip time
   * to, before anything places it on one. Empty for other rooms.
   */
  getAgentProbes: z.object({}).passthrough().optional(),
  /**
   * The client's measured round-trip times (ms) to the agents it was given,
   * by agent id. Only what arrives before the peer is placed counts.
   */
  reportAgentRtts: z.object({
    rtts: z
      .record(id, z.number().nonnegative().max(60_000))
      .refine((rtts) => Object.keys(rtts).length <= 64, 'at most 64 agents'),
  }),
  getRouterRtpCapabilities: z.object({}).passthrough().optional(),
  join: z.object({
    displayName: displayNameSchema.optional(),
    device: deviceSchema.optional(),
    rtpCapabilities: rtpCapabilitiesSchema.optional(),
    sctpCapabilities: sctpCapabilitiesSchema.optional(),
  }),
  createWebRtcTransport: z.object({
    forceTcp: z.boolean().optional(),
    producing: z.boolean().optional(),
    consuming: z.boolean().optional(),
    sctpCapabilities: sctpCapabilitiesSchema.optional(),
  }),
  connectWebRtcTransport: z.object({ transportId: id, dtlsParameters: dtlsParametersSchema }),
  restartIce: z.object({ transportId: id }),
  produce: z.object({
    transportId: id,
    kind: z.enum(['audio', 'video']),
    rtpParameters: rtpParametersSchema,
    appData: appDataSchema.optional(),
  }),
  closeProducer: z.object({ producerId: id }),
  pauseProducer: z.object({ producerId: id }),
  resumeProducer: z.object({ producerId: id }),
  pauseConsumer: z.object({ consumerId: id }),
  resumeConsumer: z.object({ consumerId: id }),
  setConsumerPreferredLayers: z.object({
    consumerId: id,
    spatialLayer: z.number().int().min(0).max(10),
    temporalLayer: z.number().int().min(0).max(10).optional(),
  }),
  setConsumerPriority: z.object({ consumerId: id, priority: z.number().int().min(1).max(255) }),
  requestConsumerKeyFrame: z.object({ consumerId: id }),
  produceData: z.object({
    transportId: id,
    sctpStreamParameters: sctpStreamParametersSchema.optional(),
    label: text(256).optional(),
    protocol: text(256).optional(),
    appData: appDataSchema.optional(),
  }),
  getTransportStats: z.object({ transportId: id }),
  getProducerStats: z.object({ producerId: id }),
  getConsumerStats: z.object({ consumerId: id }),
  getDataProducerStats: z.object({ dataProducerId: id }),
  getDataConsumerStats: z.object({ dataConsumerId: id }),
  changeDisplayName: z.object({ displayName: displayNameSchema }),
  leave: z.object({}).passthrough().optional(),
} as const;

export type ClientMethod = keyof typeof clientRequestSchemas;
export type ClientRequest<M extends ClientMethod> = z.infer<(typeof clientRequestSchemas)[M]>;

/** Answer to `getAgentProbes`: one HTTP URL per agent, and how long the client may spend measuring. */
export interface AgentProbes {
  probes: { agentId: string; url: string }[];
  timeoutMs: number;
}

export interface PeerInfo {
  id: string;
  displayName: string;
  device: Record<string, unknown>;
  /** Its token's role: presenter, viewer, or one of Nuve's configured roles. */
  role: string;
}

/** Gateway → client notifications and their data. */
export interface ServerNotifications {
  newPeer: PeerInfo;
  peerClosed: { peerId: string };
  peerDisplayNameChanged: { peerId: string; displayName: string; oldDisplayName: string };
  consumerClosed: { consumerId: string };
  consumerPaused: { consumerId: string };
  consumerResumed: { consumerId: string };
  consumerLayersChanged: { consumerId: string; spatialLayer: number | null; temporalLayer: number | null };
  consumerScore: { consumerId: string; score: unknown };
  producerScore: { producerId: string; score: unknown };
  dataConsumerClosed: { dataConsumerId: string };
  activeSpeaker: { peerId: string | null; volume?: number };
  /** mediasoup's `bwe` trace info of the peer's consuming transport, forwarded as its agent reports it (unchecked). */
  downlinkBwe: unknown;
  /** The mediasoup version of the agent carrying this peer's media (mediasoup-demo's notification), once it is placed. */
  'mediasoup-version': { version: string };
  /** The media agent hosting this peer is gone: its transports are closed; rejoin with a fresh token. */
  mediaAgentLost: { reason: string };
  /**
   * The server refuses or ends the connection (token errors, kicks, room closed, …), just before
   * closing it: `errorName` and `code` from the close table (codes.ts), and whether to rejoin.
   */
  closing: { code: number; errorName: string; reason: string; rejoin: boolean };
}

/** Gateway → client requests. */
export interface ServerRequests {
  newConsumer: {
    peerId: string;
    producerId: string;
    id: string;
    kind: 'audio' | 'video';
    rtpParameters: unknown;
    type: string;
    appData: Record<string, unknown>;
    producerPaused: boolean;
  };
  newDataConsumer: {
    peerId: string | null;
    dataProducerId: string;
    id: string;
    sctpStreamParameters: unknown;
    label: string;
    protocol: string;
    appData: Record<string, unknown>;
  };
}

export { closeCodes, closeReasonOf, closeReasons, signalingErrorCodes, tokenErrorCodes } from './codes.js';
