import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import swagger from '@fastify/swagger';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import {
  type ZodTypeProvider,
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
} from 'fastify-type-provider-zod';
import { AppError, frameworkRefusal, httpRefusal, sendError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { OpsAuth } from '../core/ops-auth.js';
import type { ServiceRecord } from './store/store.js';
import type { AgentHeartbeat } from '../core/agent-protocol.js';
import type { HeartbeatTable } from '../core/heartbeat-table.js';
import { authPlugin } from './auth.js';
import { metricsPlugin } from './metrics.js';
import { rateLimitPlugin } from './rate-limit.js';
import { sharedResult } from './shared-result.js';
import { tracingPlugin } from './tracing-plugin.js';
import type { NuveContext } from './context.js';
import { devRoutes } from './routes/dev.js';
import { groupsRoutes } from './routes/groups.js';
import { pushRoutes } from './routes/push.js';
import { onlineRoutes } from './routes/online.js';
import { roomsRoutes } from './routes/rooms.js';
import { servicesRoutes } from './routes/services.js';
import { statusRoutes } from './routes/status.js';
import { sessionsRoutes } from './routes/sessions.js';
import { tokensRoutes } from './routes/tokens.js';
import { usersRoutes } from './routes/users.js';
import { webhooksRoutes } from './routes/webhooks.js';
import { settingsRoutes } from './routes/settings.js';
import { participantsRoutes } from './routes/participants.js';
import { staticRoutes } from './static.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated tenant (set by the MAuth plugin). */
    service: ServiceRecord;
    /** `mauth_username` / `mauth_role` of the header, when it carried them. */
    mauthUser?: { username: string; role: string };
  }
}

export type NuveApp = FastifyInstance;

/**
 * Bytes Node's HTTP parser refuses before there is a request (a bad request
 * line, an unframed body, headers too large, too slow): answered like every
 * other refusal, JSON with a stable code, and the connection closed.
 */
function refuseMalformedHttp(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const refusal = new AppError(
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'REQUEST_TIMEOUT' : err.code === 'HPE_HEADER_OVERFLOW' ? 'HEADERS_TOO_LARGE' : 'MALFORMED_HTTP',
  );
  const status = refusal.status;
  const body = JSON.stringify(refusal.toJSON());
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}

/** Builds the Nuve HTTP API: one plugin per resource, every input declared with zod. */
export async function buildNuveHttp(ctx: NuveContext, logger: Logger, agents?: HeartbeatTable<AgentHeartbeat>): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // Per-request logs would dominate at thousands of token requests per second.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: ctx.config.nuve.bodyLimitBytes,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    return503OnClosing: true,
    // A path that is not valid percent-encoding never reaches a route: refuse it like any other bad input.
    frameworkErrors: (err, _request, reply) => {
      sendError(reply as FastifyReply, frameworkRefusal(err));
    },
    clientErrorHandler: refuseMalformedHttp,
  }).withTypeProvider<ZodTypeProvider>();

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  await app.register(swagger, {
    openapi: {
      info: {
        title: 'mediasoup-signal Nuve API',
        version: '1.0.0',
        description:
          'Licode-compatible management API. Authenticate with `Authorization: MAuth ...` (HMAC-SHA1 of the service key).',
      },
      components: {
        securitySchemes: { MAuth: { type: 'apiKey', in: 'header', name: 'Authorization' } },
      },
      security: [{ MAuth: [] }],
    },
    transform: jsonSchemaTransform,
  });

  if (ctx.config.tracing.enabled) await app.register(tracingPlugin);
  await app.register(rateLimitPlugin, { config: ctx.config.nuve.rateLimit, redis: ctx.redis, stats: ctx.rateLimitStats });

  app.setErrorHandler((err: FastifyError | AppError, request, reply) => {
    if (err instanceof AppError && err.code.startsWith('AUTH_')) reply.header('WWW-Authenticate', 'MAuth realm="mediasoup-signal"');
    if (hasZodFastifySchemaValidationErrors(err)) {
      const details = err.validation.map((v) => ({ path: v.instancePath, message: v.message }));
      return sendError(reply, new AppError('VALIDATION_FAILED', `invalid request ${err.validationContext ?? ''}`.trim(), { details }));
    }
    const refusal = httpRefusal(err);
    if (refusal) return sendError(reply, refusal);
    request.log.error({ err }, 'unhandled error in Nuve request');
    return sendError(reply, new AppError('INTERNAL'));
  });

  app.setNotFoundHandler((_request, reply) => sendError(reply, new AppError('NOT_FOUND')));

  if (ctx.metrics) {
    await app.register(metricsPlugin, {
      registry: ctx.metrics,
      bus: ctx.bus,
      gateways: ctx.registry,
      rateLimitStats: ctx.rateLimitStats,
      ops: new OpsAuth(ctx.config.ops),
    });
  }

  app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger());
  // Unauthenticated and never rate limited: concurrent probes share one store ping, reused for a second.
  const storePing = sharedResult(() => ctx.store.ping(), 1000);
  app.get('/health', { schema: { hide: true }, config: { rateLimitExempt: true } }, async (_request, reply) => {
    try {
      await storePing();
      return { status: 'ok', gateways: ctx.registry.list().length };
    } catch {
      return sendError(reply, new AppError('STORE_UNAVAILABLE', 'the store does not answer'));
    }
  });

  await app.register(async (api) => {
    await api.register(authPlugin, { ctx });
    await api.register(servicesRoutes, { ctx });
    await api.register(roomsRoutes, { ctx });
    await api.register(tokensRoutes, { ctx });
    await api.register(sessionsRoutes, { ctx });
    await api.register(usersRoutes, { ctx });
    await api.register(pushRoutes, { ctx });
    await api.register(onlineRoutes, { ctx });
    await api.register(webhooksRoutes, { ctx });
    await api.register(settingsRoutes, { ctx });
    await api.register(participantsRoutes, { ctx });
    await api.register(groupsRoutes, { ctx });
  });
  // Outside MAuth: status (own auth), dev endpoints and the playground (dev only), SDK bundles.
  await app.register(statusRoutes, { ctx, agents });
  if (ctx.config.nuve.devEndpoints) await app.register(devRoutes, { ctx });
  await app.register(staticRoutes, { config: ctx.config });

  return app as unknown as FastifyInstance;
}
