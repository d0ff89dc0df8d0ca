import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { AppError } from '../../core/errors.js';
import type { RoomRecord } from '../store/store.js';
import { type GatewayRpc, type RoomUser, userSchema } from '../../core/subjects.js';
import type { NuveContext } from '../context.js';
import { askGateway } from './gateway-rpc.js';
import { roomNotFound } from './rooms.js';
import { roomParams, userParams } from './schemas.js';

/** Users are whoever is connected to the room's gateway right now: Nuve asks it over the bus. */
export const usersRoutes: FastifyPluginAsyncZod<{ ctx: NuveContext }> = async (app, { ctx }) => {
  const ask = <T>(room: RoomRecord, rpc: GatewayRpc) => askGateway<T>(ctx, room, rpc);

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
