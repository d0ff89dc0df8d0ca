import fp from 'fastify-plugin';
import { AppError } from '../core/errors.js';
import type { NuveContext } from './context.js';
import { parseMAuthHeader, verifyMAuthSignature } from '../core/mauth.js';

/**
 * MAuth on every API route. Beyond Licode: the timestamp must lie within a
 * window of the server clock, and each (service, timestamp, cnonce) works
 * once, so captured headers cannot be replayed (Licode only compared with the
 * service's previous request, which also broke concurrent clients). See
 * replay-guard.ts for how "once" survives restarts.
 */
export const authPlugin = fp<{ ctx: NuveContext }>(async (app, { ctx }) => {
  const windowMs = ctx.config.nuve.authWindowSec * 1000;
  app.decorateRequest('service', null as never);
  app.decorateRequest('mauthUser', undefined);

  app.addHook('onRequest', async (request) => {
    const params = parseMAuthHeader(request.headers.authorization);
    if (!params) throw new AppError('AUTH_MISSING');
    if (params.signatureMethod !== 'HMAC_SHA1') {
      throw new AppError('AUTH_UNSUPPORTED_METHOD');
    }
    const timestamp = Number(params.timestamp);
    if (!/^\d{1,16}$/.test(params.timestamp) || Math.abs(Date.now() - timestamp) > windowMs) {
      throw new AppError('AUTH_STALE_TIMESTAMP');
    }
    if (params.cnonce.length > 64) throw new AppError('AUTH_MISSING', 'mauth_cnonce is too long');
    const service = await ctx.services.get(params.serviceId.slice(0, 64));
    if (!service || !verifyMAuthSignature(params, service.key)) {
      throw new AppError('AUTH_BAD_SIGNATURE');
    }
    const verdict = await ctx.replay.check({ serviceId: service.id, timestamp, cnonce: params.cnonce });
    if (verdict === 'replayed') throw new AppError('AUTH_REPLAYED');
    if (verdict === 'unverifiable') {
      throw new AppError('AUTH_STALE_TIMESTAMP', 'mauth_timestamp is older than this Nuve can check for replays (it restarted); sign anew');
    }
    request.service = service;
    if (params.username !== undefined && params.role !== undefined) {
      request.mauthUser = { username: params.username, role: params.role };
    }
  });
});
