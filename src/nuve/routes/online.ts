import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AppError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { OnlineEventSender, senderOptions } from '../../core/online-events.js';
import type { NuveContext } from '../context.js';
import { storableText } from './schemas.js';

/** At most this many users per call. */
export const MAX_ONLINE_USERS = 1000;

const user = storableText(256).min(1);

/**
 * Apps with their own login service report users coming online; each becomes an online event for
 * the distributors (who tell the user about the calls going on in its groups), exactly as a push
 * session opening on a gateway does. The plugin owns this Nuve's sender and closes it with the app.
 */
export const onlineRoutes: FastifyPluginAsyncZod<{ ctx: NuveContext }> = async (app, { ctx }) => {
  // Fastify's logger is Nuve's pino logger (buildNuveHttp hands it over as loggerInstance).
  const logger = app.log.child({ part: 'online' }) as unknown as Logger;
  const sender = new OnlineEventSender(ctx.bus, logger, 'api', senderOptions(ctx.config));
  if (ctx.metrics) sender.registerMetrics(ctx.metrics);
  sender.start();
  app.addHook('onClose', () => sender.close());

  app.post(
    '/online',
    {
      schema: {
        summary: 'Users came online',
        description:
          'One online event per user (a user named twice gets one), handed to the distributor owning the user; the answer ' +
          'comes once they are queued (202), with each event id: the notification the user then gets carries it, so a ' +
          'client shows each once. 503 ONLINE_BACKLOG_FULL while too many wait for a distributor.',
        tags: ['online'],
        body: z.object({ users: z.array(user).min(1).max(MAX_ONLINE_USERS) }).strict(),
        response: { 202: z.object({ events: z.array(z.object({ user: z.string(), id: z.string() })) }) },
      },
    },
    async (request, reply) => {
      const users = [...new Set(request.body.users)];
      if (!sender.hasRoomFor(users.length)) throw new AppError('ONLINE_BACKLOG_FULL');
      const events = users.map((name) => ({ user: name, id: sender.online(request.service.id, name).id }));
      return reply.code(202).send({ events });
    },
  );
};
