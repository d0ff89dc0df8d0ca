import type { types } from 'mediasoup';
import { AppError } from '../../core/errors.js';
import type { HandlerContext, Handlers } from './context.js';

/**
 * Data producers sent between this agent's router of a room and its routers
 * on other agents, over the SCTP association of the link (cascade.ts opens
 * it), driven by the room's gateway like the media pipes.
 */
export function cascadeDataHandlers(ctx: HandlerContext): Pick<Handlers, 'pipeConsumeData' | 'pipeProduceData' | 'unpipeData'> {
  return {
    pipeConsumeData: async (r) => {
      const room = ctx.room(r);
      const link = room.existingLink(r.remoteAgentId);
      // Only a peer's own data producer is sent on: a piped copy is never relayed further (no chains).
      const own = room.objects.dataProducer.get(r.dataProducerId);
      if (!own) throw new AppError('DATAPRODUCER_NOT_FOUND', `dataProducer ${r.dataProducerId} not found`);
      const dataProducer = own.object as types.DataProducer;
      // One stream per data producer and link: a second one would be a second copy on the far side.
      if (room.linkData.isSent(r.remoteAgentId, r.dataProducerId)) {
        throw new AppError('DATAPRODUCER_ALREADY_PIPED', `dataProducer ${r.dataProducerId} is already sent to ${r.remoteAgentId}`);
      }
      // Links end on the home router: a data producer of another router is piped there while the link sends it.
      const dataConsumer = await room.pipes.hold('dataProducer', r.dataProducerId, own.at.router, room.router, () =>
        link.consumeData({ dataProducerId: r.dataProducerId }),
      );
      room.linkData.trackSent(r.remoteAgentId, r.dataProducerId, dataConsumer);
      // Always set on an SCTP transport such as a link.
      const sctpStreamParameters = dataConsumer.sctpStreamParameters!;
      return {
        sctpStreamParameters,
        label: dataProducer.label,
        protocol: dataProducer.protocol,
        appData: dataProducer.appData,
      };
    },
    pipeProduceData: async (r) => {
      const room = ctx.room(r);
      const link = room.existingLink(r.remoteAgentId);
      // mediasoup refuses a second object under the same id with a bare Error; the gateway gets a code it can tell apart.
      if (room.findDataProducer(r.dataProducerId)) {
        throw new AppError('DATAPRODUCER_ALREADY_PIPED', `dataProducer ${r.dataProducerId} is already in this room here`);
      }
      const dataProducer = await link.produceData({
        id: r.dataProducerId,
        sctpStreamParameters: r.sctpStreamParameters as types.SctpStreamParameters,
        label: r.label,
        protocol: r.protocol,
        appData: r.appData,
      });
      room.linkData.trackArrived(r.remoteAgentId, dataProducer);
      return null;
    },
    unpipeData: (r) => {
      ctx.openRoom(r)?.linkData.unpipe(r.remoteAgentId, r.dataProducerId);
      return null;
    },
  };
}
