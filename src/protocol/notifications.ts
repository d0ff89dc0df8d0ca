/**
 * What the gateway sends a client unasked: protoo notifications, and the
 * requests it makes of the client (newConsumer, newDataConsumer), each method
 * with its payload. Types and one plain object, no zod, so the browser SDK
 * imports it as it imports codes.ts; the gateway's `notify` is typed by the
 * same map, so the two cannot drift apart.
 */

export interface PeerInfo {
  id: string;
  displayName: string;
  device: Record<string, unknown>;
  /** Its token's role: presenter, viewer, or one of Nuve's configured roles. */
  role: string;
}

/** A consumer's score as mediasoup reports it (0..10): its own, its producer's, and each of the producer's encodings. */
export interface ConsumerScore {
  score: number;
  producerScore: number;
  producerScores: number[];
}

/** A producer's score as mediasoup reports it: one entry per encoding (simulcast layer). */
export type ProducerScore = { encodingIdx: number; ssrc: number; rid?: string; score: number }[];

/** Gateway → client notifications and their data. */
export interface ServerNotifications {
  /** A peer joined the room (or a broadcaster started). */
  newPeer: PeerInfo;
  peerClosed: { peerId: string };
  peerDisplayNameChanged: { peerId: string; displayName: string; oldDisplayName: string };
  consumerClosed: { consumerId: string };
  /** The consumer's producer was paused (its publisher muted it). */
  consumerPaused: { consumerId: string };
  consumerResumed: { consumerId: string };
  /** The simulcast/SVC layers being forwarded; null when none is (e.g. the producer paused). */
  consumerLayersChanged: { consumerId: string; spatialLayer: number | null; temporalLayer: number | null };
  consumerScore: { consumerId: string; score: ConsumerScore };
  producerScore: { producerId: string; score: ProducerScore };
  dataConsumerClosed: { dataConsumerId: string };
  /** The loudest peer of the room, or null for silence; `volume` in dBov (absent for silence). */
  activeSpeaker: { peerId: string | null; volume?: number };
  /**
   * The receiving transport's bandwidth estimate: mediasoup's `bwe` trace info, passed on as the agent
   * reported it (its fields depend on the mediasoup version; mediasoup-demo reads `availableBitrate`).
   */
  downlinkBwe: Record<string, unknown>;
  /** The mediasoup version of the agent carrying this peer's media (mediasoup-demo's notification), once it is placed. */
  'mediasoup-version': { version: string };
  /** The media agent hosting this peer is gone: its transports are closed; the session ends with `closing` MEDIA_AGENT_LOST. */
  mediaAgentLost: { reason: string };
  /**
   * The server refuses or ends the connection (token errors, kicks, room closed, …), just before
   * closing it: `errorName` and `code` from the close table (codes.ts), and whether to rejoin.
   */
  closing: { code: number; errorName: string; reason: string; rejoin: boolean };
  /**
   * A push from the service (push sessions). A safe message has an `id`: acknowledge it (`pushAck`)
   * and drop a second copy by its id (delivery is at least once). An unsafe one has none, unless its
   * sender named it: then it has an `id` and `unsafe: true` (drop a copy by id; nothing to acknowledge).
   */
  push: { id?: string; unsafe?: true; data: unknown; sentAt: number; expiresAt?: number };
  /** The per-user cap of unarrived messages dropped this many of this user's oldest. */
  pushDropped: { count: number };
  /** The app changed a participant (name, metadata, permissions) through Nuve's room API; to every joined peer. */
  participantUpdated: {
    peerId: string;
    displayName: string;
    metadata?: unknown;
    permissions: { publish: boolean; subscribe: boolean; publishData: boolean };
  };
  /** The app muted or unmuted this peer's own track: its producer is paused or resumed on the server. */
  trackMuted: { producerId: string; muted: boolean };
  /** Data the app sent to the room (or to this peer) with its topic. */
  roomData: { topic: string; payload: unknown };
  /** The app changed the room's metadata (its `data`). */
  roomMetadataChanged: { metadata: unknown };
}
export type ServerNotificationMethod = keyof ServerNotifications;

/** One notification as a tagged union: a `switch` on `method` narrows `data`. */
export type ServerNotification = { [M in ServerNotificationMethod]: { method: M; data: ServerNotifications[M] } }[ServerNotificationMethod];

/**
 * Every notification method, as a value: a receiver drops methods it does not know (a newer gateway
 * may send more) before trusting the map. Record over the map's keys, so a method added to one and
 * not the other fails to compile.
 */
const notificationMethods: Record<ServerNotificationMethod, true> = {
  newPeer: true,
  peerClosed: true,
  peerDisplayNameChanged: true,
  consumerClosed: true,
  consumerPaused: true,
  consumerResumed: true,
  consumerLayersChanged: true,
  consumerScore: true,
  producerScore: true,
  dataConsumerClosed: true,
  activeSpeaker: true,
  downlinkBwe: true,
  'mediasoup-version': true,
  mediaAgentLost: true,
  closing: true,
  push: true,
  pushDropped: true,
  participantUpdated: true,
  trackMuted: true,
  roomData: true,
  roomMetadataChanged: true,
};

export function isServerNotificationMethod(method: string): method is ServerNotificationMethod {
  return Object.hasOwn(notificationMethods, method);
}

/** Gateway → client requests (answered with `{}`); newConsumer is a request so the gateway resumes the consumer only once the client has it. */
export interface ServerRequests {
  newConsumer: {
    /** The producing peer. */
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
export type ServerRequestMethod = keyof ServerRequests;

/** One server request as a tagged union, like ServerNotification. */
export type ServerRequest = { [M in ServerRequestMethod]: { method: M; data: ServerRequests[M] } }[ServerRequestMethod];

const requestMethods: Record<ServerRequestMethod, true> = { newConsumer: true, newDataConsumer: true };

export function isServerRequestMethod(method: string): method is ServerRequestMethod {
  return Object.hasOwn(requestMethods, method);
}
