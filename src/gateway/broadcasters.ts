import { randomBytes } from 'node:crypto';
import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { AppError, describeIssues, isAppError } from '../core/errors.js';
import {
  appDataSchema,
  deviceSchema,
  displayNameSchema,
  rtpCapabilitiesSchema,
  rtpParametersSchema,
} from '../protocol/media-parameters.js';
import type { Gateway } from './gateway.js';
import { Peer } from './peer.js';

const id = z.string().min(1).max(128);
const createBody = z.object({
  token: z.string().min(1).max(4096),
  displayName: displayNameSchema.optional(),
  device: deviceSchema.optional(),
  /** Only needed to consume (egress); defaults to the router's capabilities. */
  rtpCapabilities: rtpCapabilitiesSchema.optional(),
});
const transportBody = z.object({ comedia: z.boolean().default(true), rtcpMux: z.boolean().default(false) }).prefault({});
const connectBody = z.object({
  /** Where the transport sends: an address, as mediasoup takes no host names. */
  ip: z.union([z.ipv4(), z.ipv6()]),
  port: z.number().int().min(1).max(65535),
  rtcpPort: z.number().int().min(1).max(65535).optional(),
});
const produceBody = z.object({
  kind: z.enum(['audio', 'video']),
  rtpParameters: rtpParametersSchema,
  appData: appDataSchema.optional(),
});

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value ?? {});
  if (!result.success) throw new AppError('INVALID_REQUEST', describeIssues(result.error.issues), 400);
  return result.data;
}

/**
 * Plain-RTP ingest (mediasoup-demo's broadcaster API): create a broadcaster
 * with a presenter token, open a PlainTransport, produce from an RTP stream
 * (ffmpeg, GStreamer), delete. Later calls carry the secret answered at
 * creation as `Authorization: Bearer <secret>`.
 */
export const broadcasterRoutes: FastifyPluginAsync<{ gateway: Gateway }> = async (app, { gateway }) => {
  app.setErrorHandler((err, request, reply) => {
    if (isAppError(err)) return reply.status(err.status).send(err.toJSON());
    const status = (err as { statusCode?: number }).statusCode;
    if (status !== undefined && status >= 400 && status < 500) {
      return reply.status(status).send({ code: 'BAD_REQUEST', message: (err as Error).message });
    }
    request.log.error({ err }, 'broadcaster request failed');
    return reply.status(500).send({ code: 'INTERNAL', message: 'internal error' });
  });

  const secretOf = (auth: string | undefined) => (auth?.startsWith('Bearer ') ? auth.slice(7) : undefined);

  app.post('/broadcasters', async (request) => {
    const body = parse(createBody, request.body);
    const grant = await gateway.consumeToken(body.token);
    if (grant.role !== 'presenter') {
      throw new AppError('PRODUCE_NOT_ALLOWED', 'broadcasters need a presenter token', 403);
    }
    const room = gateway.roomFor(grant);
    const peer = new Peer(`bc-${randomBytes(8).toString('hex')}`, grant.userName, grant.role, undefined);
    if (body.displayName) peer.displayName = body.displayName;
    peer.device = body.device ?? { name: 'broadcaster' };
    peer.rtpCapabilities = body.rtpCapabilities;
    await gateway.addPeer(room, peer);
    await room.placed(peer);
    peer.joined = true;
    for (const other of room.joinedPeers(peer)) other.notify('newPeer', peer.info);
    const secret = randomBytes(24).toString('base64url');
    gateway.broadcasters.set(peer.id, { peer, room, secret: Buffer.from(secret) });
    return { id: peer.id, secret, roomId: room.id, rtpCapabilities: room.rtpCapabilities };
  });

  app.post('/broadcasters/:id/transports', async (request) => {
    const { peer, room } = gateway.broadcaster(parse(z.object({ id }), request.params).id, secretOf(request.headers.authorization));
    const body = parse(transportBody, request.body);
    return room.broadcaster.createPlainTransport(peer, body.comedia, body.rtcpMux);
  });

  app.post('/broadcasters/:id/transports/:transportId/connect', async (request) => {
    const params = parse(z.object({ id, transportId: id }), request.params);
    const { peer, room } = gateway.broadcaster(params.id, secretOf(request.headers.authorization));
    const body = parse(connectBody, request.body);
    await room.broadcaster.connectPlainTransport(peer, params.transportId, body.ip, body.port, body.rtcpPort);
    return {};
  });

  app.post('/broadcasters/:id/transports/:transportId/producers', async (request) => {
    const params = parse(z.object({ id, transportId: id }), request.params);
    const { peer, room } = gateway.broadcaster(params.id, secretOf(request.headers.authorization));
    const body = parse(produceBody, request.body);
    return room.produce(peer, { transportId: params.transportId, ...body });
  });

  app.post('/broadcasters/:id/transports/:transportId/consume', async (request) => {
    const params = parse(z.object({ id, transportId: id }), request.params);
    const { peer, room } = gateway.broadcaster(params.id, secretOf(request.headers.authorization));
    const body = parse(z.object({ producerId: id }), request.body);
    return room.broadcaster.consume(peer, params.transportId, body.producerId);
  });

  app.get('/broadcasters/:id/:kind/:objectId/stats', async (request) => {
    const params = parse(z.object({ id, kind: z.enum(['producers', 'consumers']), objectId: id }), request.params);
    const { peer, room } = gateway.broadcaster(params.id, secretOf(request.headers.authorization));
    return room.broadcaster.stats(peer, params.kind === 'producers' ? 'producer' : 'consumer', params.objectId);
  });

  app.delete('/broadcasters/:id', async (request) => {
    const params = parse(z.object({ id }), request.params);
    const { peer, room } = gateway.broadcaster(params.id, secretOf(request.headers.authorization));
    gateway.broadcasters.delete(peer.id);
    room.removePeer(peer, 'broadcaster deleted');
    return {};
  });
};
