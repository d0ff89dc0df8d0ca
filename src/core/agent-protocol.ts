import { z } from 'zod';
import type { ConsumerScore, ProducerScore } from '../protocol/notifications.js';
import {
  appDataSchema,
  dtlsParametersSchema,
  mediaParameterLimits,
  rtpCapabilitiesSchema,
  rtpParametersSchema,
  sctpCapabilitiesSchema,
  sctpStreamParametersSchema,
  text,
} from '../protocol/media-parameters.js';
import { boundedJsonObject } from './bounded-json.js';

/**
 * The contract between gateways and media agents on the bus: request
 * subjects with their zod schemas, and the events an agent publishes. The
 * gateway orchestrates rooms; the agent owns mediasoup objects and checks
 * that every object named in a request belongs to the room and peer that
 * name it.
 */
export const agentSubjects = {
  /** agent → every gateway (publish): liveness and load. */
  heartbeat: 'agent.heartbeat',
  /** agent → every gateway (publish): clean shutdown. */
  down: 'agent.down',
  /** gateway → every agent (publish): a gateway started; announce yourselves now. */
  hello: 'agent.hello',
  /** gateway → one agent (request). */
  rpc: (agentId: string) => `agent.${agentId}.rpc`,
  /** agent → the gateway hosting a room (publish): media events for its peers. */
  events: (gatewayId: string) => `gateway.${gatewayId}.media`,
} as const;

const id = z.string().min(1).max(128);
/**
 * appData on the bus: the client's (bounded at the gateway) plus what the
 * agent adds (peerId), so measured with the general limits.
 */
const busAppData = boundedJsonObject();

export const agentLoadSchema = z.object({
  workers: z.number().int().nonnegative(),
  routers: z.number().int().nonnegative(),
  transports: z.number().int().nonnegative(),
  producers: z.number().int().nonnegative(),
  consumers: z.number().int().nonnegative(),
  peers: z.number().int().nonnegative(),
  /** Mean CPU use of the mediasoup workers since the previous report, 0..1 per worker. */
  cpu: z.number().nonnegative(),
});
export type AgentLoad = z.infer<typeof agentLoadSchema>;

export const agentHeartbeatSchema = z.object({
  id,
  /**
   * Fresh for each agent process: a new one under a known id means the agent
   * restarted (kept its id, lost every router) faster than it would have been
   * missed. Absent from agents older than it.
   */
  incarnation: id.optional(),
  state: z.enum(['available', 'draining']),
  load: agentLoadSchema,
  /** Public HTTP URL clients time round trips against (TTL-BEST placement); absent when not exposed. */
  probeUrl: z.string().url().max(512).optional(),
  /** The mediasoup version its workers run, which gateways tell the agent's peers (`mediasoup-version`). Absent from agents older than it. */
  mediasoupVersion: z.string().min(1).max(64).optional(),
});
export type AgentHeartbeat = z.infer<typeof agentHeartbeatSchema>;

/**
 * A room on an agent is its gateway's: the agent keeps one router per
 * (gateway, room), so a gateway only ever reaches routers it opened, and a
 * room reopened by another gateway (its first one died) gets a router of its
 * own instead of one that the dead gateway's cleanup would close under it.
 */
const room = { roomId: id, gatewayId: id };
const owned = { ...room, peerId: id };
/** A room's link to its router on another agent (cascade). */
const link = { ...room, remoteAgentId: id };
/**
 * Which opening of the gateway's room a router serves: fresh each time the
 * gateway opens the room on the agent, so a router left from an earlier
 * opening (the gateway lost the agent for a while, or restarted under the
 * same id) is replaced, never reused, and closing one opening never closes
 * the next.
 */
const epoch = id;
const srtpParameters = z.object({ cryptoSuite: z.string().min(1).max(64), keyBase64: z.string().min(1).max(256) });

/** Every request method, with its input schema. */
export const agentRequestSchemas = {
  ensureRouter: z.object({ ...room, epoch }),
  closeRouter: z.object({ ...room, epoch }),
  closePeer: z.object(owned),
  createWebRtcTransport: z.object({
    ...owned,
    producing: z.boolean(),
    consuming: z.boolean(),
    forceTcp: z.boolean().optional(),
    sctpCapabilities: sctpCapabilitiesSchema.optional(),
  }),
  connectWebRtcTransport: z.object({ ...owned, transportId: id, dtlsParameters: dtlsParametersSchema }),
  restartIce: z.object({ ...owned, transportId: id }),
  createPlainTransport: z.object({ ...owned, comedia: z.boolean(), rtcpMux: z.boolean() }),
  connectPlainTransport: z.object({
    ...owned,
    transportId: id,
    ip: z.string().min(1).max(64),
    port: z.number().int().min(1).max(65535),
    rtcpPort: z.number().int().min(1).max(65535).optional(),
  }),
  closeTransport: z.object({ ...owned, transportId: id }),
  produce: z.object({
    ...owned,
    transportId: id,
    kind: z.enum(['audio', 'video']),
    rtpParameters: rtpParametersSchema,
    appData: appDataSchema.optional(),
  }),
  closeProducer: z.object({ ...owned, producerId: id }),
  pauseProducer: z.object({ ...owned, producerId: id }),
  resumeProducer: z.object({ ...owned, producerId: id }),
  consume: z.object({
    ...owned,
    transportId: id,
    producerId: id,
    rtpCapabilities: rtpCapabilitiesSchema,
    appData: busAppData.optional(),
  }),
  closeConsumer: z.object({ ...owned, consumerId: id }),
  pauseConsumer: z.object({ ...owned, consumerId: id }),
  resumeConsumer: z.object({ ...owned, consumerId: id }),
  setConsumerPreferredLayers: z.object({
    ...owned,
    consumerId: id,
    spatialLayer: z.number().int().min(0).max(10),
    temporalLayer: z.number().int().min(0).max(10).optional(),
  }),
  setConsumerPriority: z.object({ ...owned, consumerId: id, priority: z.number().int().min(1).max(255) }),
  requestConsumerKeyFrame: z.object({ ...owned, consumerId: id }),
  produceData: z.object({
    ...owned,
    transportId: id,
    sctpStreamParameters: sctpStreamParametersSchema.optional(),
    label: text(256).optional(),
    protocol: text(256).optional(),
    appData: appDataSchema.optional(),
  }),
  consumeData: z.object({ ...owned, transportId: id, dataProducerId: id }),
  getTransportStats: z.object({ ...owned, transportId: id }),
  getProducerStats: z.object({ ...owned, producerId: id }),
  getConsumerStats: z.object({ ...owned, consumerId: id }),
  getDataProducerStats: z.object({ ...owned, dataProducerId: id }),
  getDataConsumerStats: z.object({ ...owned, dataConsumerId: id }),
  /** Counts read from the mediasoup workers themselves (leak checks, status API). */
  dump: z.object({}),
  /**
   * Round-trip time from this agent to a client's address, measured by an
   * unprivileged TCP connect (a SYN answered by SYN-ACK or RST is one round
   * trip): the fallback when the client did not report its own probes.
   */
  probeClient: z.object({
    address: z.string().min(1).max(64),
    port: z.number().int().min(1).max(65535),
    timeoutMs: z.number().int().min(1).max(10_000),
  }),
  /** This agent's end of the PipeTransport linking the room's router to its router on `remoteAgentId`. */
  createPipeTransport: z.object({ ...link, enableSrtp: z.boolean() }),
  connectPipeTransport: z.object({
    ...link,
    ip: z.string().min(1).max(64),
    port: z.number().int().min(1).max(65535),
    srtpParameters: srtpParameters.optional(),
  }),
  closePipeTransport: z.object(link),
  /** Sends a local producer over the link (the far end then calls pipeProduce with the answer). */
  pipeConsume: z.object({ ...link, producerId: id }),
  /** A producer arriving over the link, under the same id as on its own agent. */
  pipeProduce: z.object({
    ...link,
    producerId: id,
    kind: z.enum(['audio', 'video']),
    /** Written by mediasoup on the sending agent: only measured. */
    rtpParameters: boundedJsonObject(mediaParameterLimits.rtp),
    paused: z.boolean(),
    appData: busAppData,
  }),
  /** Stops sending (pipe consumer) or receiving (piped producer) `producerId` over the link. */
  unpipe: z.object({ ...link, producerId: id }),
  /** Mirrors the original producer's pause state on its piped copy here. */
  setPipedProducerPaused: z.object({ ...room, producerId: id, paused: z.boolean() }),
  /** Sends a peer's data producer over the link's SCTP association (the far end then calls pipeProduceData with the answer). */
  pipeConsumeData: z.object({ ...link, dataProducerId: id }),
  /** A data producer arriving over the link, under the same id as on its own agent, on the stream the sender chose. */
  pipeProduceData: z.object({
    ...link,
    dataProducerId: id,
    sctpStreamParameters: sctpStreamParametersSchema,
    label: text(256),
    protocol: text(256),
    appData: busAppData,
  }),
  /** Stops sending (pipe data consumer) or receiving (piped data producer) `dataProducerId` over the link. */
  unpipeData: z.object({ ...link, dataProducerId: id }),
} as const;

export type AgentMethod = keyof typeof agentRequestSchemas;
export type AgentRequest<M extends AgentMethod> = z.infer<(typeof agentRequestSchemas)[M]>;
/** A request as a gateway's room writes it: the room adds its gateway's id. */
export type RoomRequest<M extends AgentMethod> = Omit<AgentRequest<M>, 'gatewayId'>;

export interface TransportInfo {
  id: string;
  iceParameters: unknown;
  iceCandidates: unknown;
  dtlsParameters: unknown;
  sctpParameters?: unknown;
}

export interface ConsumerInfo {
  id: string;
  producerId: string;
  kind: 'audio' | 'video';
  rtpParameters: unknown;
  type: string;
  producerPaused: boolean;
  appData: Record<string, unknown>;
}

export interface DataConsumerInfo {
  id: string;
  dataProducerId: string;
  sctpStreamParameters: unknown;
  label: string;
  protocol: string;
  appData: Record<string, unknown>;
}

export interface PipeTransportInfo {
  ip: string;
  port: number;
  srtpParameters?: { cryptoSuite: string; keyBase64: string };
}

export interface AgentDump {
  agentId: string;
  workers: number;
  /** Routers the workers hold for rooms (a leaked one counts too); spares are not among them. */
  routers: number;
  /** Idle routers kept ready for the next rooms (`agent.spareRouters`). */
  spareRouters: number;
  transports: number;
  producers: number;
  consumers: number;
  dataProducers: number;
  dataConsumers: number;
  /** Links to other agents (cascade); also counted in `transports`. */
  pipeTransports: number;
  /** Of those, the ones protected by SRTP. */
  srtpPipeTransports: number;
  /** Producers arriving from other agents; also counted in `producers`. */
  pipedProducers: number;
  /** Data producers arriving from other agents; also counted in `dataProducers`. */
  pipedDataProducers: number;
  /** Local data producers sent to other agents; also counted in `dataConsumers`. */
  pipeDataConsumers: number;
}

/** What each method answers. */
export interface AgentResults {
  ensureRouter: { rtpCapabilities: unknown };
  closeRouter: null;
  closePeer: null;
  createWebRtcTransport: TransportInfo;
  connectWebRtcTransport: null;
  restartIce: { iceParameters: unknown };
  createPlainTransport: { id: string; ip: string; port: number; rtcpPort?: number };
  connectPlainTransport: null;
  closeTransport: null;
  produce: { id: string };
  closeProducer: null;
  pauseProducer: null;
  resumeProducer: null;
  /** null when the peer's RTP capabilities cannot receive this producer. */
  consume: ConsumerInfo | null;
  closeConsumer: null;
  pauseConsumer: null;
  resumeConsumer: null;
  setConsumerPreferredLayers: null;
  setConsumerPriority: null;
  requestConsumerKeyFrame: null;
  produceData: { id: string; label: string; protocol: string };
  consumeData: DataConsumerInfo;
  getTransportStats: unknown[];
  getProducerStats: unknown[];
  getConsumerStats: unknown[];
  getDataProducerStats: unknown[];
  getDataConsumerStats: unknown[];
  dump: AgentDump;
  probeClient: { rttMs: number | null };
  createPipeTransport: PipeTransportInfo;
  connectPipeTransport: null;
  closePipeTransport: null;
  pipeConsume: { kind: 'audio' | 'video'; rtpParameters: Record<string, unknown>; paused: boolean; appData: Record<string, unknown> };
  pipeProduce: null;
  unpipe: null;
  setPipedProducerPaused: null;
  pipeConsumeData: {
    sctpStreamParameters: AgentRequest<'pipeProduceData'>['sctpStreamParameters'];
    label: string; protocol: string; appData: Record<string, unknown> };
  pipeProduceData: null;
  unpipeData: null;
}

export const agentRpcSchema = z.object({ method: z.string().min(1).max(64), data: z.unknown() });

/** Events an agent publishes to the gateway of a room, each naming the peer it concerns. */
export type AgentEvent =
  | { type: 'consumerClosed'; roomId: string; peerId: string; consumerId: string }
  | { type: 'consumerPaused'; roomId: string; peerId: string; consumerId: string }
  | { type: 'consumerResumed'; roomId: string; peerId: string; consumerId: string }
  | { type: 'consumerScore'; roomId: string; peerId: string; consumerId: string; score: ConsumerScore }
  | { type: 'consumerLayersChanged'; roomId: string; peerId: string; consumerId: string; layers: unknown }
  | { type: 'producerScore'; roomId: string; peerId: string; producerId: string; score: ProducerScore }
  | { type: 'producerClosed'; roomId: string; peerId: string; producerId: string }
  | { type: 'dataConsumerClosed'; roomId: string; peerId: string; dataConsumerId: string }
  | { type: 'dataProducerClosed'; roomId: string; peerId: string; dataProducerId: string }
  | { type: 'downlinkBwe'; roomId: string; peerId: string; bwe: Record<string, unknown> }
  | { type: 'activeSpeaker'; roomId: string; producerId: string | null; volume?: number }
  | { type: 'routerClosed'; roomId: string; epoch?: string; reason: RouterClosedReason };

/**
 * Why the agent closed a router its gateway had not asked it to close: the
 * gateway's peers on it have no media left and must be told.
 */
export type RouterClosedReason =
  | 'worker-died'
  | 'agent-closing'
  /** Its gateway stopped (goodbye) or went silent for `agent.gatewayTimeoutMs`. */
  | 'gateway-stopped'
  | 'gateway-silent'
  /** Closed by anything else (mediasoup itself). */
  | 'router-closed';

/** On the wire every event also names the agent that sent it (a room may span several). */
export const agentEventSchema = z
  .object({ type: z.string(), roomId: id, agentId: id })
  .passthrough()
  .transform((event) => event as unknown as AgentEvent & { agentId: string });
