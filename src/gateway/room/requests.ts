import type { z } from 'zod';
import { AppError, describeIssues } from '../../core/errors.js';
import {
  type AgentProbes,
  type ClientMethod,
  type ClientRequest,
  type ClientResponses,
  clientRequestSchemas,
} from '../../protocol/signaling.js';
import type { Peer } from '../peer.js';
import type { DemoRules } from './demo-rules.js';
import type { RoomRouters } from './routers.js';

/** Every client request's data, by method, as a concrete map (so a handler's type follows its key). */
type Requests = { [M in ClientMethod]: ClientRequest<M> };

/** One handler per signaling method, taking that method's validated data and answering its response. */
export type ClientHandlers = {
  [M in ClientMethod]: (peer: Peer, data: Requests[M]) => Promise<ClientResponses[M]> | ClientResponses[M];
};

const schemas: { [M in ClientMethod]: z.ZodType<Requests[M]> } = clientRequestSchemas;

/** Requests a peer may send before `join`. */
const BEFORE_JOIN: ReadonlySet<ClientMethod> = new Set<ClientMethod>([
  'getAgentProbes',
  'reportAgentRtts',
  'getRouterRtpCapabilities',
  'join',
  'createWebRtcTransport',
  'connectWebRtcTransport',
  'leave',
]);

function isClientMethod(method: string): method is ClientMethod {
  return Object.hasOwn(clientRequestSchemas, method);
}

/**
 * A client request in, its answer out: known method, valid data, allowed
 * before `join` or after it, then the method's own handler.
 */
export async function dispatchRequest(handlers: ClientHandlers, peer: Peer, method: string, rawData: unknown): Promise<unknown> {
  if (peer.closed) throw new AppError('PEER_CLOSED');
  if (!isClientMethod(method)) {
    throw new AppError('UNKNOWN_METHOD', `unknown method "${method}"`);
  }
  return run(handlers, peer, method, rawData);
}

async function run<M extends ClientMethod>(handlers: ClientHandlers, peer: Peer, method: M, rawData: unknown): Promise<ClientResponses[M]> {
  const parsed = schemas[method].safeParse(rawData ?? {});
  if (!parsed.success) throw new AppError('INVALID_REQUEST', `invalid ${method}: ${describeIssues(parsed.error.issues)}`);
  if (!BEFORE_JOIN.has(method) && !peer.joined) {
    throw new AppError('NOT_JOINED', `${method} requires join first`);
  }
  return handlers[method](peer, parsed.data);
}

/**
 * The room's handlers: the mediasoup-demo rules, and the requests the agent
 * answers as they are (it checks that the named object belongs to the peer).
 */
export function roomHandlers(rules: DemoRules, routers: RoomRouters, probes: () => AgentProbes): ClientHandlers {
  return {
    getAgentProbes: (peer) => (peer.placement ? { probes: [], timeoutMs: 0 } : probes()),
    reportAgentRtts: (peer, d) => {
      // Too late once placed: the peer's media is already on an agent.
      if (!peer.placement) peer.reportedRtts = d.rtts;
      return null;
    },
    getRouterRtpCapabilities: async (peer) => {
      await routers.placed(peer);
      return routers.rtpCapabilities;
    },
    join: (peer, d) => rules.join(peer, d),
    createWebRtcTransport: (peer, d) => rules.createWebRtcTransport(peer, d),
    connectWebRtcTransport: (peer, d) => rules.connectWebRtcTransport(peer, d),
    restartIce: (peer, d) => rules.restartIce(peer, d),
    produce: (peer, d) => rules.produce(peer, d),
    closeProducer: (peer, d) => rules.closeProducer(peer, d),
    pauseProducer: (peer, d) => rules.setProducerPaused(peer, d.producerId, true),
    resumeProducer: (peer, d) => rules.setProducerPaused(peer, d.producerId, false),
    pauseConsumer: (peer, d) => routers.forPeer('pauseConsumer', peer, d),
    resumeConsumer: (peer, d) => routers.forPeer('resumeConsumer', peer, d),
    setConsumerPreferredLayers: (peer, d) => routers.forPeer('setConsumerPreferredLayers', peer, d),
    setConsumerPriority: (peer, d) => routers.forPeer('setConsumerPriority', peer, d),
    requestConsumerKeyFrame: (peer, d) => routers.forPeer('requestConsumerKeyFrame', peer, d),
    produceData: (peer, d) => rules.produceData(peer, d),
    getTransportStats: (peer, d) => routers.forPeer('getTransportStats', peer, d),
    getProducerStats: (peer, d) => routers.forPeer('getProducerStats', peer, d),
    getConsumerStats: (peer, d) => routers.forPeer('getConsumerStats', peer, d),
    getDataProducerStats: (peer, d) => routers.forPeer('getDataProducerStats', peer, d),
    getDataConsumerStats: (peer, d) => routers.forPeer('getDataConsumerStats', peer, d),
    changeDisplayName: (peer, d) => rules.changeDisplayName(peer, d),
    leave: (peer) => {
      peer.close('leave');
      return null;
    },
  };
}
