import type { types } from 'mediasoup';
import { AppError } from '../../core/errors.js';
import { type HandlerContext, type Handlers, ownerOf } from './context.js';

/** A peer's data producers and consumers (SCTP over its WebRtcTransport). */
export function dataHandlers(
  ctx: HandlerContext,
): Pick<Handlers, 'produceData' | 'consumeData' | 'getDataProducerStats' | 'getDataConsumerStats'> {
  return {
    produceData: async (r) => {
      const room = ctx.room(r);
      const { object: transport, at } = room.entry<types.Transport>('transport', r.transportId, r);
      const dataProducer = await transport.produceData({
        sctpStreamParameters: r.sctpStreamParameters as unknown as types.SctpStreamParameters | undefined,
        label: r.label,
        protocol: r.protocol,
        appData: { ...r.appData, peerId: r.peerId },
      });
      room.track('dataProducer', ownerOf(r), dataProducer, at);
      // Its gateway takes its copies on other agents down (their consumers there close with them).
      dataProducer.observer.once('close', () =>
        room.emit({ type: 'dataProducerClosed', roomId: r.roomId, peerId: r.peerId, dataProducerId: dataProducer.id }),
      );
      return { id: dataProducer.id, label: dataProducer.label, protocol: dataProducer.protocol };
    },
    consumeData: async (r) => {
      const room = ctx.room(r);
      const { object: transport, at } = room.entry<types.Transport>('transport', r.transportId, r);
      // A peer's own data producer here, or one piped in from another agent (cascade-data.ts).
      const source = room.findDataProducer(r.dataProducerId);
      if (!source) {
        throw new AppError('DATAPRODUCER_NOT_FOUND', `dataProducer ${r.dataProducerId} not found`);
      }
      // A data producer of another of the room's routers is piped here first, for as long as this data consumer lives.
      const dataConsumer = await room.pipes.hold('dataProducer', r.dataProducerId, source.at.router, at.router, () =>
        transport.consumeData({
          dataProducerId: r.dataProducerId,
          appData: { peerId: r.peerId },
        }),
      );
      room.track('dataConsumer', ownerOf(r), dataConsumer, at);
      const emitClosed = () =>
        room.emit({ type: 'dataConsumerClosed', roomId: r.roomId, peerId: r.peerId, dataConsumerId: dataConsumer.id });
      dataConsumer.on('dataproducerclose', emitClosed);
      dataConsumer.on('transportclose', emitClosed);
      return {
        id: dataConsumer.id,
        dataProducerId: r.dataProducerId,
        sctpStreamParameters: dataConsumer.sctpStreamParameters,
        label: dataConsumer.label,
        protocol: dataConsumer.protocol,
        appData: dataConsumer.appData,
      };
    },
    getDataProducerStats: (r) =>
      ctx.room(r).get<types.DataProducer>('dataProducer', r.dataProducerId, r).getStats(),
    getDataConsumerStats: (r) =>
      ctx.room(r).get<types.DataConsumer>('dataConsumer', r.dataConsumerId, r).getStats(),
  };
}
