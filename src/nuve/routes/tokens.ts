import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { AppError } from '../../core/errors.js';
import type { NuveContext } from '../context.js';
import { roomNotFound } from './rooms.js';
import { roomParams, storableText } from './schemas.js';

/** Taken as signed in the MAuth header (not trimmed: the signature covers it as it is). */
const tokenUserName = storableText(256);

export const tokensRoutes: FastifyPluginAsyncZod<{ ctx: NuveContext }> = async (app, { ctx }) => {
  // As in Licode, user name and role travel in the signed MAuth header (mauth_username, mauth_role).
  app.post(
    '/rooms/:room/tokens',
    {
      schema: {
        summary: 'Create a one-time access token for a room',
        description:
          'The user name and role (one of nuve.roles: presenter and viewer by default) come from ' +
          'mauth_username/mauth_role of the signed header. Answers the token as base64 text; it carries the ' +
          "role's permissions.",
        tags: ['tokens'],
        params: roomParams,
      },
    },
    async (request, reply) => {
      const user = request.mauthUser;
      if (!user || user.username === '') throw new AppError('TOKEN_USER_MISSING');
      ctx.tokens.permissionsOf(user.role); // an unknown role is refused first (INVALID_ROLE)
      if (!tokenUserName.safeParse(user.username).success) {
        throw new AppError('INVALID_USER');
      }
      const room = await ctx.rooms.get(request.service.id, request.params.room);
      if (!room) throw roomNotFound();
      const token = await ctx.tokens.issue(request.service, room, user.username, user.role);
      return reply.type('text/plain; charset=utf-8').send(token);
    },
  );
};
