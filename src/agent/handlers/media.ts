import type { types } from 'mediasoup';
import { AppError } from '../../core/errors.js';
import { type HandlerContext, type Handlers, ownerOf } from './context.js';

/** A peer's producers and consumers, each event of theirs told to the room's gateway. */
export function mediaHandlers(
  ctx: HandlerContext,
): Pick<
  Handlers,
  | 'produce'
  | 'closeProducer'
  | 'pauseProducer'
  | 'resumeProducer'
  | 'consume'
  | 'closeConsumer'
  | 'pauseConsumer'
  | 'resumeConsumer'
  | 'setConsumerPreferredLayers'
  | 'setConsumerPriority'
  | 'requestConsumerKeyFrame'
  | 'getProducerStats'
  | 'getConsumerStats'
> {
  return {
    produce: async (r) => {
      const room = ctx.room(r);
      const { object: transport, at } = room.entry<types.Transport>('transport', r.transportId, r);
      const producer = await transport.produce({
        kind: r.kind,
        rtpParameters: r.rtpParameters as unknown as types.RtpParameters,
        appData: { ...r.appData, peerId: r.peerId },
      });
      room.track('producer', ownerOf(r), producer, at);
      producer.on('score', (score) => {
        for (const s of score) ctx.metrics()?.producerScore.observe(s.score);
        room.emit({ type: 'producerScore', roomId: r.roomId, peerId: r.peerId, producerId: producer.id, score });
      });
      producer.observer.once('close', () =>
        room.emit({ type: 'producerClosed', roomId: r.roomId, peerId: r.peerId, producerId: producer.id }),
      );
      if (producer.kind === 'audio') {
        await room
          .audioLevels(at)
          .then((levels) => levels.addProducer({ producerId: producer.id }))
          .catch(() => undefined);
      }
      return { id: producer.id };
    },
    closeProducer: (r) => {
      ctx.room(r).get<types.Producer>('producer', r.producerId, r).close();
      return null;
    },
    pauseProducer: async (r) => {
      await ctx.room(r).get<types.Producer>('producer', r.producerId, r).pause();
      return null;
    },
    resumeProducer: async (r) => {
      await ctx.room(r).get<types.Producer>('producer', r.producerId, r).resume();
      return null;
    },
    consume: async (r) => {
      const room = ctx.room(r);
      const { object: transport, at } = room.entry<types.Transport>('transport', r.transportId, r);
      const source = room.findProducer(r.producerId);
      if (!source) throw new AppError('PRODUCER_NOT_FOUND', `producer ${r.producerId} not found`);
      const { producer } = source;
      const rtpCapabilities = r.rtpCapabilities as unknown as types.RtpCapabilities;
      if (!source.at.router.canConsume({ producerId: r.producerId, rtpCapabilities })) return null;
      // A producer of another of the room's routers is piped here first, for as long as this consumer lives.
      const consumer = await room.pipes.hold('producer', r.producerId, source.at.router, at.router, () =>
        transport.consume({
          producerId: r.producerId,
          rtpCapabilities,
          // Paused until the client has its consumer ready, so the first packets (and keyframe) are not lost.
          paused: true,
          // The producer's appData (its peer, the app's `source`...) is what the receiving client needs.
          appData: { ...producer.appData, ...r.appData },
        }),
      );
      room.track('consumer', ownerOf(r), consumer, at);
      const base = { roomId: r.roomId, peerId: r.peerId, consumerId: consumer.id };
      consumer.on('transportclose', () => room.emit({ type: 'consumerClosed', ...base }));
      consumer.on('producerclose', () => room.emit({ type: 'consumerClosed', ...base }));
      consumer.on('producerpause', () => room.emit({ type: 'consumerPaused', ...base }));
      consumer.on('producerresume', () => room.emit({ type: 'consumerResumed', ...base }));
      consumer.on('score', (score) => {
        ctx.metrics()?.consumerScore.observe(score.score);
        room.emit({ type: 'consumerScore', ...base, score });
      });
      consumer.on('layerschange', (layers) => room.emit({ type: 'consumerLayersChanged', ...base, layers }));
      return {
        id: consumer.id,
        producerId: r.producerId,
        kind: consumer.kind,
        rtpParameters: consumer.rtpParameters,
        type: consumer.type,
        producerPaused: consumer.producerPaused,
        appData: consumer.appData,
      };
    },
    closeConsumer: (r) => {
      ctx.room(r).get<types.Consumer>('consumer', r.consumerId, r).close();
      return null;
    },
    pauseConsumer: async (r) => {
      await ctx.room(r).get<types.Consumer>('consumer', r.consumerId, r).pause();
      return null;
    },
    resumeConsumer: async (r) => {
      await ctx.room(r).get<types.Consumer>('consumer', r.consumerId, r).resume();
      return null;
    },
    setConsumerPreferredLayers: async (r) => {
      await ctx.room(r)
        .get<types.Consumer>('consumer', r.consumerId, r)
        .setPreferredLayers({ spatialLayer: r.spatialLayer, temporalLayer: r.temporalLayer });
      return null;
    },
    setConsumerPriority: async (r) => {
      await ctx.room(r).get<types.Consumer>('consumer', r.consumerId, r).setPriority(r.priority);
      return null;
    },
    requestConsumerKeyFrame: async (r) => {
      await ctx.room(r).get<types.Consumer>('consumer', r.consumerId, r).requestKeyFrame();
      return null;
    },
    getProducerStats: (r) => ctx.room(r).get<types.Producer>('producer', r.producerId, r).getStats(),
    getConsumerStats: (r) => ctx.room(r).get<types.Consumer>('consumer', r.consumerId, r).getStats(),
  };
}
