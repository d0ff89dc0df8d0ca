import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { roleNameSchema, sessionScopesSchema } from '../../core/grant-schemas.js';
import type { NuveContext } from '../context.js';
import { roomNotFound } from './rooms.js';
import { storableText } from './schemas.js';

/**
 * A session token's request. The user is the tenant's own name for it (tokens and grants pair it with
 * the service id); `room` (with the role the user has there) goes with the scope `room` and only with it.
 */
const sessionRequest = z
  .object({
    user: storableText(256).min(1),
    scopes: sessionScopesSchema,
    room: z.object({ id: storableText(64).min(1), role: roleNameSchema }).strict().optional(),
  })
  .strict()
  .refine((body) => body.scopes.includes('room') === (body.room !== undefined), {
    message: 'the scope "room" needs a room, and a room needs the scope "room"',
    path: ['room'],
  });

export const sessionsRoutes: FastifyPluginAsyncZod<{ ctx: NuveContext }> = async (app, { ctx }) => {
  app.post(
    '/sessions',
    {
      schema: {
        summary: 'Create a one-time session token for a user',
        description:
          'A session connects one user of the calling service to a gateway for the scopes it names: `push` ' +
          '(acknowledge pushes), `rpc` (call the service), `room` (room signaling, with `room`: the room id ' +
          'and the role, one of nuve.roles, the user has there). Signed with the service key over every field, ' +
          'usable once, valid nuve.tokenTtlSec; connect with `gatewayUrl/?token=` as with a room token.',
        tags: ['tokens'],
        body: sessionRequest,
        response: { 200: z.object({ token: z.string() }) },
      },
    },
    async (request) => {
      const { user, scopes, room } = request.body;
      if (!room) return { token: await ctx.tokens.issueSession(request.service, user, scopes) };
      ctx.tokens.permissionsOf(room.role); // an unknown role is refused first (INVALID_ROLE), as for room tokens
      const record = await ctx.rooms.get(request.service.id, room.id);
      if (!record) throw roomNotFound();
      return { token: await ctx.tokens.issueSession(request.service, user, scopes, { record, role: room.role }) };
    },
  );
};
