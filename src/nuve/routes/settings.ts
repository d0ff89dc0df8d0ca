import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { NuveContext } from '../context.js';

const settingsView = z.object({
  allowRemoteUnmute: z.boolean().describe("Whether the app's server may unmute a participant's track (default: nuve.allowRemoteUnmute)"),
});

/** A remote unmute is allowed where the tenant said so, else where the platform's default allows it. */
export async function allowsRemoteUnmute(ctx: NuveContext, serviceId: string): Promise<boolean> {
  return (await ctx.store.settings.get(serviceId)).allowRemoteUnmute ?? ctx.config.nuve.allowRemoteUnmute;
}

/** What the calling tenant decides for its own rooms; another tenant's settings are neither seen nor changed. */
export const settingsRoutes: FastifyPluginAsyncZod<{ ctx: NuveContext }> = async (app, { ctx }) => {
  const view = async (serviceId: string) => ({ allowRemoteUnmute: await allowsRemoteUnmute(ctx, serviceId) });

  app.get(
    '/settings',
    { schema: { summary: "The calling tenant's settings", tags: ['settings'], response: { 200: settingsView } } },
    async (request) => view(request.service.id),
  );

  app.patch(
    '/settings',
    {
      schema: {
        summary: "Change the calling tenant's settings",
        tags: ['settings'],
        body: z.object({ allowRemoteUnmute: z.boolean().optional() }).strict(),
        response: { 200: settingsView },
      },
    },
    async (request) => {
      await ctx.store.settings.update(request.service.id, request.body);
      return view(request.service.id);
    },
  );
};
