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
import type { PeerInfo } from './notifications.js';

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

/**
 * `protooMessageSchema`'s verdict, with the request (nearly every message a client sends) checked against its own
 * branch only: a union tries its branches in turn and pays for the failed ones.
 */
export function parseProtooMessage(json: unknown): ReturnType<typeof protooMessageSchema.safeParse> {
  if (typeof json === 'object' && json !== null && (json as { request?: unknown }).request === true) {
    const request = protooRequestSchema.safeParse(json);
    if (request.success) return request;
  }
  return protooMessageSchema.safeParse(json);
}
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
    /**
     * Large-audience rooms: a listener is not announced to the others (no newPeer or peerClosed,
     * not in their joins' `peers`) until it publishes; it still hears everything. Default false:
     * mediasoup-demo's semantics, every peer known to every other.
     */
    listener: z.boolean().optional(),
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

/** A WebRtcTransport as the client's mediasoup-client Device needs it to create its end. */
export interface WebRtcTransportInfo {
  id: string;
  iceParameters: unknown;
  iceCandidates: unknown;
  dtlsParameters: unknown;
  sctpParameters?: unknown;
}

/**
 * What each client request answers. Media parameters written by mediasoup
 * (router capabilities, ICE parameters, stats) pass through the gateway
 * untouched, so they stay `unknown` here.
 */
export interface ClientResponses {
  getAgentProbes: AgentProbes;
  reportAgentRtts: null;
  getRouterRtpCapabilities: unknown;
  join: { peers: PeerInfo[] };
  createWebRtcTransport: WebRtcTransportInfo;
  connectWebRtcTransport: null;
  restartIce: unknown;
  produce: { id: string };
  closeProducer: null;
  pauseProducer: null;
  resumeProducer: null;
  pauseConsumer: null;
  resumeConsumer: null;
  setConsumerPreferredLayers: null;
  setConsumerPriority: null;
  requestConsumerKeyFrame: null;
  produceData: { id: string };
  getTransportStats: unknown[];
  getProducerStats: unknown[];
  getConsumerStats: unknown[];
  getDataProducerStats: unknown[];
  getDataConsumerStats: unknown[];
  changeDisplayName: null;
  leave: null;
}

// The server → client direction is typed in the zod-free notifications.ts (the SDK imports it directly).
export type {
  ConsumerScore,
  PeerInfo,
  ProducerScore,
  ServerNotification,
  ServerNotificationMethod,
  ServerNotifications,
  ServerRequest,
  ServerRequestMethod,
  ServerRequests,
} from './notifications.js';
export { closeCodes, closeReasonOf, closeReasons, tokenErrorCodes } from './codes.js';
