import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AppError } from '../../core/errors.js';
import {
  MAX_PUSH_USERS,
  type PushMessage,
  type PushSendResult,
  pushDataSchema,
  pushIdSchema,
  pushSubjects,
} from '../../core/push-protocol.js';
import type { NuveContext } from '../context.js';
import { storableText } from './schemas.js';

/** A safe push to a thousand users writes a thousand rows and reaches their gateways: more than a token's round trip. */
const SEND_TIMEOUT_MS = 10_000;
const READ_TIMEOUT_MS = 3000;

const user = storableText(256).min(1);
const options = {
  data: pushDataSchema.describe('Any JSON value; its serialisation at most push.maxPayloadBytes (else 413 PUSH_PAYLOAD_TOO_LARGE)'),
  safe: z.boolean().default(true).describe('Stored until the client acknowledges it, restored on connect (default); false: only to sessions online now'),
  ttlSec: z.number().int().positive().max(30 * 86_400).optional().describe('Safe pushes: not delivered once this long has passed'),
};
const sendResult = z.object({
  messages: z.array(z.object({ user: z.string(), id: z.string() })),
  reached: z.number(),
  offline: z.array(z.string()),
});
const message = z.object({ id: z.string().optional(), data: z.unknown(), sentAt: z.number(), expiresAt: z.number().optional() });

/**
 * Push to the calling tenant's users. Nuve only validates and forwards: the push role does the
 * work, reached over the bus (queue group "push"), so any Nuve serves any call.
 */
export const pushRoutes: FastifyPluginAsyncZod<{ ctx: NuveContext }> = async (app, { ctx }) => {
  const limit = ctx.config.push.maxPayloadBytes;
  // A batch names up to a thousand users of up to 256 characters (escaped, 6 bytes each at worst) next to its payload.
  const bodyLimit = Math.max(ctx.config.nuve.bodyLimitBytes, limit * 6 + MAX_PUSH_USERS * 256 * 6 + 1024);

  function checkSize(data: unknown): void {
    const bytes = Buffer.byteLength(JSON.stringify(data));
    if (bytes > limit) throw new AppError('PUSH_PAYLOAD_TOO_LARGE', `the payload is ${bytes} bytes; push.maxPayloadBytes is ${limit}`);
  }

  function send(serviceId: string, users: string[], body: { data: unknown; safe: boolean; ttlSec?: number }): Promise<PushSendResult> {
    checkSize(body.data);
    return ctx.bus.request<PushSendResult>(
      pushSubjects.send,
      { serviceId, users, data: body.data, safe: body.safe, ...(body.ttlSec !== undefined && { ttlSec: body.ttlSec }) },
      { timeoutMs: SEND_TIMEOUT_MS },
    );
  }

  app.post(
    '/push/messages',
    {
      bodyLimit,
      schema: {
        summary: 'Push to a batch of users',
        description:
          'One message per user (a user named twice gets one). `reached` counts the connections the notification was sent ' +
          'to; `offline` lists the users none was (a safe message waits for them). There is no user directory: a user who ' +
          'never connected is offline.',
        tags: ['push'],
        body: z.object({ users: z.array(user).min(1).max(MAX_PUSH_USERS), ...options }).strict(),
        response: { 200: sendResult },
      },
    },
    async (request) => send(request.service.id, request.body.users, request.body),
  );

  app.post(
    '/push/users/:user/messages',
    {
      schema: {
        summary: 'Push to one user',
        tags: ['push'],
        params: z.object({ user }),
        body: z.object(options).strict(),
        response: { 200: sendResult },
      },
    },
    async (request) => send(request.service.id, [request.params.user], request.body),
  );

  app.get(
    '/push/users/:user/messages',
    {
      schema: {
        summary: "A user's unarrived safe messages, oldest first",
        description: 'At most `limit`, and fewer when their payloads pass 512 KB.',
        tags: ['push'],
        params: z.object({ user }),
        querystring: z.object({ limit: z.coerce.number().int().positive().max(1000).default(100) }).strict(),
        response: { 200: z.array(message) },
      },
    },
    async (request) =>
      ctx.bus.request<PushMessage[]>(
        pushSubjects.pending,
        { serviceId: request.service.id, userName: request.params.user, limit: request.query.limit },
        { timeoutMs: READ_TIMEOUT_MS },
      ),
  );

  app.delete(
    '/push/users/:user/messages/:id',
    {
      schema: {
        summary: 'Cancel one unarrived safe message',
        tags: ['push'],
        params: z.object({ user, id: pushIdSchema }),
        response: { 204: z.null().describe('Cancelled') },
      },
    },
    async (request, reply) => {
      await ctx.bus.request(
        pushSubjects.cancel,
        { serviceId: request.service.id, userName: request.params.user, id: request.params.id },
        { timeoutMs: READ_TIMEOUT_MS },
      );
      return reply.code(204).send(null);
    },
  );
};
