import type { types } from 'mediasoup';
import { type HandlerContext, type Handlers, ownerOf } from './context.js';

/** A peer's WebRtcTransports (clients) and PlainTransports (broadcasters). */
export function transportHandlers(
  ctx: HandlerContext,
): Pick<
  Handlers,
  | 'createWebRtcTransport'
  | 'connectWebRtcTransport'
  | 'restartIce'
  | 'createPlainTransport'
  | 'connectPlainTransport'
  | 'closeTransport'
  | 'getTransportStats'
> {
  return {
    createWebRtcTransport: async (r) => {
      const room = ctx.room(r);
      // A WebRTC peer is offered every producer of the room (at least one to come, if none yet), and its first
      // transport reserves them, even a sending one: mediasoup-demo's clients create that one first and their
      // consuming one a round trip later, too late for a burst of joins to see. (A peer that only publishes
      // holds its reservation until it leaves: the room spreads a little early, never late.)
      const at = await room.routerFor(r.peerId, Math.max(1, room.producerCount));
      const transport = await at.router.createWebRtcTransport({
        // The WebRtcServer of the router's own worker: a transport cannot use another worker's.
        webRtcServer: at.slot.webRtcServer,
        enableUdp: !r.forceTcp,
        enableTcp: true,
        preferUdp: true,
        enableSctp: r.sctpCapabilities !== undefined,
        numSctpStreams: (r.sctpCapabilities?.numStreams as types.NumSctpStreams | undefined) ?? { OS: 1024, MIS: 1024 },
        initialAvailableOutgoingBitrate: ctx.config.initialOutgoingBitrate,
        appData: { peerId: r.peerId, producing: r.producing, consuming: r.consuming },
      });
      room.track('transport', ownerOf(r), transport, at);
      transport.on('icestatechange', (state) => state === 'disconnected' && ctx.metrics()?.transportFailures.inc({ kind: 'ice' }));
      transport.on('dtlsstatechange', (state) => state === 'failed' && ctx.metrics()?.transportFailures.inc({ kind: 'dtls' }));
      transport.on('sctpstatechange', (state) => state === 'failed' && ctx.metrics()?.transportFailures.inc({ kind: 'sctp' }));
      if (r.consuming) {
        // Not awaited: the worker takes its channel's requests in order, so the transport's next request finds
        // the trace on, and the client gets its transport one worker round trip sooner. Fails only if the
        // transport closed meanwhile.
        transport.enableTraceEvent(['bwe']).catch(() => undefined);
        transport.on('trace', (trace) => {
          if (trace.type === 'bwe' && trace.direction === 'out') {
            // mediasoup types trace info as unknown; a bwe trace's is an object of bitrates.
            room.emit({ type: 'downlinkBwe', roomId: r.roomId, peerId: r.peerId, bwe: trace.info as Record<string, unknown> });
          }
        });
      }
      return {
        id: transport.id,
        iceParameters: transport.iceParameters,
        iceCandidates: transport.iceCandidates,
        dtlsParameters: transport.dtlsParameters,
        sctpParameters: transport.sctpParameters,
      };
    },
    connectWebRtcTransport: async (r) => {
      const transport = ctx.room(r).get<types.WebRtcTransport>('transport', r.transportId, r);
      await transport.connect({ dtlsParameters: r.dtlsParameters as unknown as types.DtlsParameters });
      return null;
    },
    restartIce: async (r) => {
      const transport = ctx.room(r).get<types.WebRtcTransport>('transport', r.transportId, r);
      return { iceParameters: await transport.restartIce() };
    },
    createPlainTransport: async (r) => {
      const room = ctx.room(r);
      const a = ctx.config;
      // comedia: ingest (a broadcaster sends first); otherwise egress, which consumes the producers it names, one at least.
      const at = await room.routerFor(r.peerId, r.comedia ? 0 : 1);
      const transport = await at.router.createPlainTransport({
        listenInfo: { protocol: 'udp', ip: a.listenIp, announcedAddress: a.announcedAddress },
        rtcpMux: r.rtcpMux,
        comedia: r.comedia,
        appData: { peerId: r.peerId },
      });
      room.track('transport', ownerOf(r), transport, at);
      return {
        id: transport.id,
        ip: transport.tuple.localAddress,
        port: transport.tuple.localPort,
        rtcpPort: transport.rtcpTuple?.localPort,
      };
    },
    connectPlainTransport: async (r) => {
      const transport = ctx.room(r).get<types.PlainTransport>('transport', r.transportId, r);
      await transport.connect({ ip: r.ip, port: r.port, rtcpPort: r.rtcpPort });
      return null;
    },
    closeTransport: (r) => {
      ctx.room(r).get<types.Transport>('transport', r.transportId, r).close();
      return null;
    },
    getTransportStats: (r) => ctx.room(r).get<types.Transport>('transport', r.transportId, r).getStats(),
  };
}
