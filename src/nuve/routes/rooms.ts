import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { jsonLimitViolation } from '../../core/bounded-json.js';
import { AppError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { RoomChanges, RoomRecord } from '../store/store.js';
import { subjects } from '../../core/subjects.js';
import type { NuveContext } from '../context.js';
import { askGateway } from './gateway-rpc.js';
import { roomView } from './representation.js';
import { roomName, roomOptions, roomParams } from './schemas.js';

export const roomNotFound = () => new AppError('ROOM_NOT_FOUND');

/** A new room's record: Licode's defaults where `options` are silent (ROOM-BEST, not p2p, no gateway yet). */
export function newRoomRecord(serviceId: string, name: string, options: z.infer<typeof roomOptions> = {}, id = newId()): RoomRecord {
  return {
    id,
    serviceId,
    name,
    data: options.data ?? undefined,
    p2p: options.p2p === true,
    mediaConfiguration: options.mediaConfiguration ?? null,
    eapolicy: options.eapolicy ?? 'ROOM-BEST',
    gatewayId: null,
    createdAt: Date.now(),
    ...(options.group != null && { group: options.group }),
  };
}

export const roomsRoutes: FastifyPluginAsyncZod<{ ctx: NuveContext }> = async (app, { ctx }) => {
  const { store } = ctx;

  /**
   * The room's data is its metadata: once the change is stored, its webhook hears of it and its live
   * peers are told (best effort: a gateway that is gone has nobody to tell).
   */
  async function metadataChanged(serviceId: string, roomId: string, metadata: unknown): Promise<void> {
    await ctx.webhooks.record([{ id: randomUUID(), type: 'room_metadata_changed', at: Date.now(), serviceId, roomId, metadata }]);
    const room = await store.getRoom(serviceId, roomId);
    if (room) await askGateway(ctx, room, { method: 'setRoomMetadata', roomId, metadata }).catch(() => undefined);
  }

  app.post(
    '/rooms',
    {
      schema: {
        summary: 'Create a room',
        tags: ['rooms'],
        body: z.object({ name: roomName, options: roomOptions.optional() }),
      },
    },
    async (request) => {
      const room = newRoomRecord(request.service.id, request.body.name, request.body.options);
      await store.createRoom(room);
      return roomView(room);
    },
  );

  app.get('/rooms', { schema: { summary: "List the service's rooms", tags: ['rooms'] } }, async (request) =>
    (await store.listRooms(request.service.id)).map(roomView),
  );

  app.get('/rooms/:room', { schema: { summary: 'Get a room', tags: ['rooms'], params: roomParams } }, async (request) => {
    const room = await store.getRoom(request.service.id, request.params.room);
    if (!room) throw roomNotFound();
    return roomView(room);
  });

  // PUT replaces name and options (as Licode: data/p2p/mediaConfiguration only when given).
  app.put(
    '/rooms/:room',
    {
      schema: {
        summary: 'Update a room',
        tags: ['rooms'],
        params: roomParams,
        body: z.object({ name: roomName, options: roomOptions.optional() }),
      },
    },
    async (request, reply) => {
      const options = request.body.options ?? {};
      const changes: RoomChanges = { name: request.body.name };
      if (options.data !== undefined) changes.data = options.data;
      if (options.p2p !== undefined) changes.p2p = options.p2p;
      if (options.mediaConfiguration !== undefined) changes.mediaConfiguration = options.mediaConfiguration;
      if (options.eapolicy !== undefined) changes.eapolicy = options.eapolicy;
      if (options.group !== undefined) changes.group = options.group;
      if (!(await store.updateRoom(request.service.id, request.params.room, changes))) throw roomNotFound();
      await ctx.invalidation.roomChanged(request.service.id, request.params.room);
      if (options.data !== undefined) await metadataChanged(request.service.id, request.params.room, changes.data);
      return reply.type('text/plain; charset=utf-8').send('Room Updated');
    },
  );

  // PATCH changes only what is given; object `data` is merged key by key (Licode semantics).
  app.patch(
    '/rooms/:room',
    {
      schema: {
        summary: 'Patch a room',
        tags: ['rooms'],
        params: roomParams,
        body: z.object({ name: roomName.optional(), options: roomOptions.optional() }).nullish(),
      },
    },
    async (request, reply) => {
      const room = await store.getRoom(request.service.id, request.params.room);
      if (!room) throw roomNotFound();
      const body = request.body ?? {};
      const options = body.options ?? {};
      const changes: RoomChanges = {};
      if (body.name !== undefined) changes.name = body.name;
      if (options.p2p !== undefined) changes.p2p = options.p2p;
      if (options.mediaConfiguration !== undefined) changes.mediaConfiguration = options.mediaConfiguration;
      if (options.eapolicy !== undefined) changes.eapolicy = options.eapolicy;
      if (options.group !== undefined) changes.group = options.group;
      if (options.data !== undefined) {
        changes.data = mergeData(room.data, options.data);
        // Each half is within the limits; their union must be too.
        const violation = jsonLimitViolation(changes.data);
        if (violation) throw new AppError('VALIDATION_FAILED', `invalid request body: merged options.data: ${violation}`);
      }
      if (!(await store.updateRoom(request.service.id, room.id, changes))) throw roomNotFound();
      await ctx.invalidation.roomChanged(request.service.id, room.id);
      if (changes.data !== undefined) await metadataChanged(request.service.id, room.id, changes.data);
      return reply.type('text/plain; charset=utf-8').send('Room Updated');
    },
  );

  app.delete(
    '/rooms/:room',
    { schema: { summary: 'Delete a room (its peers are disconnected)', tags: ['rooms'], params: roomParams } },
    async (request, reply) => {
      const room = await store.getRoom(request.service.id, request.params.room);
      if (!room || !(await store.deleteRoom(request.service.id, room.id))) throw roomNotFound();
      await ctx.invalidation.roomChanged(request.service.id, room.id);
      if (room.gatewayId !== null) {
        // Best effort: the room's gateway closes it; a gateway that is gone has nothing to close.
        ctx.bus
          .request(subjects.gatewayRpc(room.gatewayId), { method: 'closeRoom', roomId: room.id }, { timeoutMs: 2000 })
          .catch((err: unknown) => request.log.debug({ err, room: room.id }, 'closeRoom not delivered'));
      }
      return reply.type('text/plain; charset=utf-8').send('Room deleted');
    },
  );
};

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function mergeData(current: unknown, patch: unknown): unknown {
  return isPlainObject(current) && isPlainObject(patch) ? { ...current, ...patch } : patch;
}
