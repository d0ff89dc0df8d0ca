import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AppError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { NuveContext } from '../context.js';
import { generateServiceKey } from '../service-directory.js';
import { serviceView } from './representation.js';
import { serviceKey, serviceName, serviceParams } from './schemas.js';

const notAuthorized = () =>
  new AppError('SERVICE_NOT_AUTHORIZED');
const serviceNotFound = () => new AppError('SERVICE_NOT_FOUND');

/**
 * Tenant management: the superService only. This plugin is its own
 * encapsulation context, so the hook below guards exactly the routes declared
 * here, whichever spelling of the path the router matched them by; it runs
 * after MAuth (registered on the parent) has set `request.service`.
 */
export const servicesRoutes: FastifyPluginAsyncZod<{ ctx: NuveContext }> = async (app, { ctx }) => {
  app.addHook('onRequest', async (request) => {
    if (!request.service.isSuper) throw notAuthorized();
  });

  app.post(
    '/services',
    {
      schema: {
        summary: 'Create a service (tenant); answers its id as a JSON string',
        tags: ['services'],
        body: z.object({ name: serviceName, key: serviceKey.optional() }),
      },
    },
    async (request) => {
      const id = newId();
      await ctx.store.createService({
        id,
        name: request.body.name,
        key: request.body.key ?? generateServiceKey(),
        isSuper: false,
        createdAt: Date.now(),
      });
      // Another Nuve may have cached this id as unknown (a request that guessed it): not any more.
      await ctx.invalidation.serviceChanged(id);
      return JSON.stringify(id);
    },
  );

  app.get('/services', { schema: { summary: 'List services', tags: ['services'] } }, async () => {
    const services = await ctx.store.listServices();
    return Promise.all(services.map(async (s) => serviceView(s, await ctx.store.listRooms(s.id))));
  });

  app.get(
    '/services/:service',
    { schema: { summary: 'Get a service', tags: ['services'], params: serviceParams } },
    async (request) => {
      const service = await ctx.store.getService(request.params.service);
      if (!service) throw serviceNotFound();
      return serviceView(service, await ctx.store.listRooms(service.id));
    },
  );

  app.delete(
    '/services/:service',
    { schema: { summary: 'Delete a service with its rooms and tokens', tags: ['services'], params: serviceParams } },
    async (request, reply) => {
      const service = await ctx.store.getService(request.params.service);
      if (!service) throw serviceNotFound();
      if (service.isSuper) throw new AppError('SUPER_SERVICE_PROTECTED');
      await ctx.store.deleteService(service.id);
      await ctx.invalidation.serviceChanged(service.id);
      return reply.type('text/plain; charset=utf-8').send('Service deleted');
    },
  );
};
