import Fastify, { type FastifyBaseLogger, type FastifyPluginAsync, LogController, type onRequestHookHandler } from 'fastify';
import type { Registry } from 'prom-client';
import { AppError, sendError } from './errors.js';
import type { Logger } from './logger.js';
import type { OpsAuth } from './ops-auth.js';

export interface OpsRoutesOptions {
  auth: OpsAuth;
  /** Takes new rooms (false once draining). */
  ready(): boolean;
  /** Starts the drain; calling it again changes nothing. */
  drain(): void;
  /** What is left before the drain is done (counts the preStop hook waits on). */
  remaining(): Record<string, number>;
  /** The process's metrics, if it keeps any. */
  metrics(): Registry | undefined;
  /** The process's own snapshot for `GET /status` (ops token), if it has one. */
  status?(): unknown;
}

const unauthorized = new AppError('OPS_UNAUTHORIZED', 'operational endpoint: send Authorization: Bearer <ops.token>');

/**
 * The probe and operational endpoints of a gateway or an agent. `/health` and
 * `/ready` are open (Kubernetes probes them without credentials) and say only
 * whether the process lives and takes new rooms. `/metrics`, `/drain`
 * (`POST` starts it, `GET` tells what is left) and `/status` (where a role
 * has one: the gateway's service flow) need the ops token on the
 * matched route, whatever the URL spelling and wherever the request comes
 * from: a same-host proxy is no proof of anything.
 */
export const opsRoutes: FastifyPluginAsync<OpsRoutesOptions> = async (app, options) => {
  const opsOnly: onRequestHookHandler = async (request, reply) => {
    if (!options.auth.allows(request.headers.authorization)) {
      return reply.status(401).header('www-authenticate', 'Bearer').send(unauthorized.toJSON());
    }
  };

  app.get('/health', async () => ({ status: 'ok' }));
  app.get('/ready', async (_request, reply) =>
    options.ready() ? { status: 'ready' } : sendError(reply, new AppError('DRAINING')),
  );
  app.get('/metrics', { onRequest: opsOnly }, async (_request, reply) => {
    const registry = options.metrics();
    if (!registry) return sendError(reply, new AppError('NOT_FOUND', 'metrics disabled'));
    return reply.type(registry.contentType).send(await registry.metrics());
  });
  app.post('/drain', { onRequest: opsOnly }, async () => {
    options.drain();
    return { draining: true, ...options.remaining() };
  });
  app.get('/drain', { onRequest: opsOnly }, async () => ({ draining: !options.ready(), ...options.remaining() }));
  const status = options.status;
  if (status) {
    app.get('/status', { onRequest: opsOnly }, async (_request, reply) => {
      reply.header('cache-control', 'no-store');
      return status();
    });
  }
};

/**
 * A process's own probe server on `port` (0: a free one) serving only the ops routes: a role without an
 * HTTP server of its own (agent, distributor) answers the kubelet and Prometheus with it. Close the returned
 * server with the role.
 */
export async function startOpsServer(port: number, logger: Logger, options: OpsRoutesOptions): Promise<OpsServer> {
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
  });
  await app.register(opsRoutes, options);
  await app.ready();
  // Every interface, as Node chooses by default (IPv6 and IPv4 where it can): the kubelet probes the pod's address.
  await new Promise<void>((resolve) => app.server.listen(port, resolve));
  return {
    get port() {
      const address = app.server.address();
      return address && typeof address !== 'string' ? address.port : undefined;
    },
    close: () => app.close(),
  };
}

export interface OpsServer {
  /** Where it listens (undefined once closed). */
  readonly port: number | undefined;
  close(): Promise<void>;
}
