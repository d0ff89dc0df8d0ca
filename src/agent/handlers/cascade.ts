import type { types } from 'mediasoup';
import { AppError } from '../../core/errors.js';
import type { HandlerContext, Handlers } from './context.js';

const PIPE_SOCKET_BUFFER = 1024 * 1024;
/**
 * SCTP streams of a link, each way: the most data producers one agent can
 * pipe to another in one room (128 publishing peers at the default
 * gateway.limits.maxDataProducersPerPeer of 8). usrsctp keeps state per
 * stream for every link of every room, so not more: mediasoup's own
 * pipeToRouter uses the same.
 */
const LINK_SCTP_STREAMS = { OS: 1024, MIS: 1024 };

/** Links between this agent's router of a room and its routers on other agents, driven by the room's gateway. */
export function cascadeHandlers(
  ctx: HandlerContext,
): Pick<
  Handlers,
  'createPipeTransport' | 'connectPipeTransport' | 'closePipeTransport' | 'pipeConsume' | 'pipeProduce' | 'unpipe' | 'setPipedProducerPaused'
> {
  const a = ctx.config;
  return {
    createPipeTransport: async (r) => {
      const transport = await ctx.room(r).link(r.remoteAgentId, {
        listenInfo: {
          protocol: 'udp',
          ip: a.listenIp,
          announcedAddress: a.announcedAddress,
          portRange: { min: a.plainRtpMinPort, max: a.plainRtpMaxPort },
          // A link carries every piped stream of the room at once; the default socket buffer (208 KiB) overflows
          // under bursts of a few hundred packets (bench/cascade). Capped by net.core.rmem_max/wmem_max.
          recvBufferSize: PIPE_SOCKET_BUFFER,
          sendBufferSize: PIPE_SOCKET_BUFFER,
        },
        enableSrtp: r.enableSrtp,
        // Retransmissions over the link, so loss between hosts is repaired before it reaches the receivers.
        enableRtx: true,
        // Data producers cross the link over its SCTP association (cascade-data.ts), one stream each way per piped data
        // producer. SCTP is not covered by enableSrtp: data messages cross the link unencrypted.
        enableSctp: true,
        numSctpStreams: LINK_SCTP_STREAMS,
        // What a client's WebRtcTransport accepts (mediasoup's default there), instead of a pipe's 256 MiB default.
        maxSctpMessageSize: 262_144,
      });
      return {
        ip: transport.tuple.localAddress,
        port: transport.tuple.localPort,
        ...(transport.srtpParameters ? { srtpParameters: transport.srtpParameters } : {}),
      };
    },
    connectPipeTransport: async (r) => {
      const link = ctx.room(r).existingLink(r.remoteAgentId);
      await link.connect({ ip: r.ip, port: r.port, srtpParameters: r.srtpParameters as types.SrtpParameters | undefined });
      return null;
    },
    closePipeTransport: (r) => {
      ctx.openRoom(r)?.links.get(r.remoteAgentId)?.close();
      return null;
    },
    pipeConsume: async (r) => {
      const room = ctx.room(r);
      const link = room.existingLink(r.remoteAgentId);
      // Only a peer's own producer is sent on: a piped copy is never relayed further (no chains).
      const own = room.objects.producer.get(r.producerId);
      if (!own) throw new AppError('PRODUCER_NOT_FOUND', `producer ${r.producerId} not found`);
      const producer = own.object as types.Producer;
      // Links end on the home router: a producer of another router is piped there while the link sends it.
      const consumer = await room.pipes.hold('producer', r.producerId, own.at.router, room.router, () =>
        link.consume({ producerId: r.producerId }),
      );
      room.linkMedia.trackSent(r.remoteAgentId, r.producerId, consumer);
      return {
        kind: consumer.kind,
        rtpParameters: consumer.rtpParameters as unknown as Record<string, unknown>,
        paused: consumer.producerPaused,
        appData: producer.appData,
      };
    },
    pipeProduce: async (r) => {
      const room = ctx.room(r);
      const producer = await room.existingLink(r.remoteAgentId).produce({
        id: r.producerId,
        kind: r.kind,
        rtpParameters: r.rtpParameters as unknown as types.RtpParameters,
        paused: r.paused,
        appData: r.appData,
      });
      room.linkMedia.trackArrived(r.remoteAgentId, producer);
      return null;
    },
    unpipe: (r) => {
      ctx.openRoom(r)?.linkMedia.unpipe(r.remoteAgentId, r.producerId);
      return null;
    },
    setPipedProducerPaused: async (r) => {
      const piped = ctx.room(r).linkMedia.copy(r.producerId);
      if (!piped) throw new AppError('PRODUCER_NOT_FOUND', `piped producer ${r.producerId} not found`);
      await (r.paused ? piped.pause() : piped.resume());
      return null;
    },
  };
}
