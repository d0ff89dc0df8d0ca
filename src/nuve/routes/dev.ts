import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AppError } from '../../core/errors.js';
import type { ServiceRecord } from '../store/store.js';
import { roleNameSchema } from '../../core/grant-schemas.js';
import type { NuveContext } from '../context.js';
import { roomView } from './representation.js';
import { newRoomRecord } from './rooms.js';
import { roomName, roomParams, userName } from './schemas.js';

/**
 * Developer endpoints for the embedded playground, registered only with
 * `nuve.devEndpoints` (on by default for `mediasoup-signal all` on loopback).
 * They act as the superService WITHOUT authentication — what an app server
 * does with MAuth — so anyone who reaches Nuve's port can create rooms and
 * tokens. Never enable them on a reachable address.
 */
export const devRoutes: FastifyPluginAsyncZod<{ ctx: NuveContext }> = async (app, { ctx }) => {
  app.log.warn('Nuve developer endpoints are enabled (/dev/rooms, /dev/tokens, /dev/sessions): unauthenticated, for local use only');
  let superService: ServiceRecord | undefined;
  const su = async (): Promise<ServiceRecord> => {
    superService ??= await ctx.store.findSuperService();
    if (!superService) throw new AppError('NO_SUPER_SERVICE');
    return superService;
  };

  app.get('/dev/rooms', { schema: { summary: "List the superService's rooms (dev)", tags: ['dev'], security: [] } }, async () =>
    (await ctx.store.listRooms((await su()).id)).sort((a, b) => b.createdAt - a.createdAt).map(roomView),
  );

  app.post(
    '/dev/rooms',
    {
      schema: {
        summary: 'Create a room as the superService, or return the one with this name (dev)',
        tags: ['dev'],
        security: [],
        body: z.object({ name: roomName.optional() }).nullish(),
      },
    },
    async (request) => {
      const service = await su();
      const name = request.body?.name;
      if (name !== undefined) {
        const existing = (await ctx.store.listRooms(service.id)).find((r) => r.name === name);
        if (existing) return { ...roomView(existing), created: false };
      }
      const room = newRoomRecord(service.id, name ?? `room-${Math.random().toString(36).slice(2, 6)}`);
      await ctx.store.createRoom(room);
      return { ...roomView(room), created: true };
    },
  );

  app.post(
    '/dev/tokens',
    {
      schema: {
        summary: 'Create a one-time token for a superService room (dev)',
        tags: ['dev'],
        security: [],
        body: z.object({ roomId: roomParams.shape.room, user: userName, role: roleNameSchema.default('presenter') }),
      },
    },
    async (request) => {
      const service = await su();
      const room = await ctx.store.getRoom(service.id, request.body.roomId);
      if (!room) throw new AppError('ROOM_NOT_FOUND');
      const token = await ctx.tokens.issue(service, room, request.body.user, request.body.role);
      return { token };
    },
  );

  app.post(
    '/dev/sessions',
    {
      schema: {
        summary: "Create a one-time session token (scopes rpc and push) for a superService user (dev): the playground's chat",
        tags: ['dev'],
        security: [],
        body: z.object({ user: userName }).strict(),
      },
    },
    async (request) => ({ token: await ctx.tokens.issueSession(await su(), request.body.user, ['rpc', 'push']) }),
  );
};
