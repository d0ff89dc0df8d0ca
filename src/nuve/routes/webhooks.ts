import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AppError } from '../../core/errors.js';
import { ROOM_EVENT_TYPES, roomEventTypeSchema } from '../../core/room-events.js';
import type { NuveContext } from '../context.js';
import type { WebhookEndpoint } from '../webhooks/repository.js';
import { roomNotFound } from './rooms.js';
import { roomParams, storableText } from './schemas.js';

/** Where events are POSTed: http or https only (no file:, data:, …); redirects are never followed at delivery. */
const webhookUrl = storableText(2048).refine((text) => {
  try {
    const url = new URL(text);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  } catch {
    return false;
  }
}, 'must be an absolute http or https URL');

const eventTypes = z
  .array(roomEventTypeSchema)
  .max(ROOM_EVENT_TYPES.length)
  .refine((types) => new Set(types).size === types.length, 'each event type at most once');

const endpointBody = z.object({ url: webhookUrl, include: eventTypes.optional(), exclude: eventTypes.optional() }).strict();

const endpointView = z.object({
  url: z.string(),
  room: z.string().optional(),
  include: z.array(z.string()).optional(),
  exclude: z.array(z.string()).optional(),
});

const view = (e: WebhookEndpoint): z.infer<typeof endpointView> => ({
  url: e.url,
  ...(e.roomId !== '' && { room: e.roomId }),
  ...(e.include && { include: e.include }),
  ...(e.exclude && { exclude: e.exclude }),
});

const webhookNotFound = () => new AppError('WEBHOOK_NOT_FOUND');

/**
 * The tenant's webhook (`/webhook`) and a room's own, which takes the room's events instead
 * (`/rooms/:room/webhook`). Every lookup is under the authenticated tenant.
 */
export const webhooksRoutes: FastifyPluginAsyncZod<{ ctx: NuveContext }> = async (app, { ctx }) => {
  const { store } = ctx;

  /** '' for the tenant's endpoint; a room of the tenant's, else ROOM_NOT_FOUND. */
  async function scope(serviceId: string, roomId?: string): Promise<string> {
    if (roomId === undefined) return '';
    if (!(await store.getRoom(serviceId, roomId))) throw roomNotFound();
    return roomId;
  }

  for (const [path, params] of [
    ['/webhook', undefined],
    ['/rooms/:room/webhook', roomParams],
  ] as const) {
    const which = params ? "a room's" : "the service's";
    app.put(
      path,
      {
        schema: {
          summary: `Set ${which} webhook (URL and event filters)`,
          tags: ['webhooks'],
          ...(params && { params }),
          body: endpointBody,
          response: { 200: endpointView },
        },
      },
      async (request) => {
        const roomId = await scope(request.service.id, (request.params as { room?: string }).room);
        const endpoint: WebhookEndpoint = { serviceId: request.service.id, roomId, ...request.body, createdAt: Date.now() };
        await store.webhooks.setEndpoint(endpoint);
        return view(endpoint);
      },
    );
    app.get(
      path,
      { schema: { summary: `Get ${which} webhook`, tags: ['webhooks'], ...(params && { params }), response: { 200: endpointView } } },
      async (request) => {
        const roomId = await scope(request.service.id, (request.params as { room?: string }).room);
        const endpoint = await store.webhooks.getEndpoint(request.service.id, roomId);
        if (!endpoint) throw webhookNotFound();
        return view(endpoint);
      },
    );
    app.delete(
      path,
      { schema: { summary: `Remove ${which} webhook (its undelivered events are dropped)`, tags: ['webhooks'], ...(params && { params }) } },
      async (request, reply) => {
        const roomId = await scope(request.service.id, (request.params as { room?: string }).room);
        if (!(await store.webhooks.deleteEndpoint(request.service.id, roomId))) throw webhookNotFound();
        return reply.code(204).send();
      },
    );
  }

  app.get(
    '/webhook/failed',
    {
      schema: {
        summary: 'Events given up after the retention period, newest first',
        tags: ['webhooks'],
        querystring: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) }).strict(),
        response: {
          200: z.array(
            z.object({
              eventId: z.string(),
              roomId: z.string(),
              type: z.string(),
              createdAt: z.number(),
              failedAt: z.number(),
              attempts: z.number(),
              lastError: z.string().nullable(),
            }),
          ),
        },
      },
    },
    async (request) => store.webhooks.listFailed(request.service.id, request.query.limit),
  );
};
