import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { AppError, isAppError } from '../../core/errors.js';
import type { RoomRecord } from '../store/store.js';
import { type GatewayRpc, type RoomUser, subjects, userSchema } from '../../core/subjects.js';
import type { NuveContext } from '../context.js';
import { roomNotFound } from './rooms.js';
import { roomParams, userParams } from './schemas.js';

const GATEWAY_RPC_TIMEOUT_MS = 3000;

/** Users are whoever is connected to the room's gateway right now: Nuve asks it over the bus. */
export const usersRoutes: FastifyPluginAsyncZod<{ ctx: NuveContext }> = async (app, { ctx }) => {
  async function ask<T>(room: RoomRecord, rpc: GatewayRpc): Promise<T | undefined> {
    if (room.gatewayId === null || !ctx.registry.get(room.gatewayId)) return undefined;
    try {
      return await ctx.bus.request<T>(subjects.gatewayRpc(room.gatewayId), rpc, { timeoutMs: GATEWAY_RPC_TIMEOUT_MS });
    } catch (err) {
      if (isAppError(err) && err.code.startsWith('BUS_')) {
        throw new AppError('GATEWAY_UNAVAILABLE');
      }
      throw err;
    }
  }

  async function users(serviceId: string, roomId: string): Promise<RoomUser[]> {
    const room = await ctx.store.getRoom(serviceId, roomId);
    if (!room) throw roomNotFound();
    const list = await ask<unknown>(room, { method: 'listUsers', roomId: room.id });
    const parsed = userSchema.array().safeParse(list ?? []);
    if (!parsed.success) throw new AppError('GATEWAY_UNAVAILABLE', 'gateway answered malformed users', { status: 502 });
    return parsed.data;
  }

  app.get(
    '/rooms/:room/users',
    { schema: { summary: 'Users connected to a room', tags: ['users'], params: roomParams } },
    async (request) => users(request.service.id, request.params.room),
  );

  app.get(
    '/rooms/:room/users/:user',
    { schema: { summary: 'One connected user', tags: ['users'], params: userParams } },
    async (request) => {
      const user = (await users(request.service.id, request.params.room)).find((u) => u.name === request.params.user);
      if (!user) throw new AppError('USER_NOT_FOUND');
      return user;
    },
  );

  app.delete(
    '/rooms/:room/users/:user',
    { schema: { summary: 'Disconnect every connection of a user', tags: ['users'], params: userParams } },
    async (request, reply) => {
      const room = await ctx.store.getRoom(request.service.id, request.params.room);
      if (!room) throw roomNotFound();
      const kicked = await ask<number>(room, { method: 'kickUser', roomId: room.id, userName: request.params.user });
      if (!kicked) throw new AppError('USER_NOT_FOUND');
      return reply.type('text/plain; charset=utf-8').send('Success');
    },
  );
};
