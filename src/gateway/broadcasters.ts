import { randomBytes } from 'node:crypto';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AppError, describeIssues } from '../core/errors.js';
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
const broadcasterParams = z.object({ id });
const transportParams = z.object({ id, transportId: id });

/**
 * Every route with the schemas of its path parameters and body: validated
 * here, and walked by the robustness suite (test/signaling-robustness.test.ts),
 * so a route added to this table is fuzzed as well.
 */
export const broadcasterApi = {
  create: {
    method: 'POST',
    url: '/broadcasters',
    params: z.object({}),
    body: z.object({
      token: z.string().min(1).max(4096),
      displayName: displayNameSchema.optional(),
      device: deviceSchema.optional(),
      /** Only needed to consume (egress); defaults to the router's capabilities. */
      rtpCapabilities: rtpCapabilitiesSchema.optional(),
      /** Not announced to the room's peers until it publishes (a plain-RTP listener of a large room); see `join`'s `listener`. */
      listener: z.boolean().optional(),
    }),
  },
  createTransport: {
    method: 'POST',
    url: '/broadcasters/:id/transports',
    params: broadcasterParams,
    body: z.object({ comedia: z.boolean().default(true), rtcpMux: z.boolean().default(false) }).prefault({}),
  },
  connect: {
    method: 'POST',
    url: '/broadcasters/:id/transports/:transportId/connect',
    params: transportParams,
    body: z.object({
      /** Where the transport sends: an address, as mediasoup takes no host names. */
      ip: z.union([z.ipv4(), z.ipv6()]),
      port: z.number().int().min(1).max(65535),
      rtcpPort: z.number().int().min(1).max(65535).optional(),
    }),
  },
  produce: {
    method: 'POST',
    url: '/broadcasters/:id/transports/:transportId/producers',
    params: transportParams,
    body: z.object({ kind: z.enum(['audio', 'video']), rtpParameters: rtpParametersSchema, appData: appDataSchema.optional() }),
  },
  consume: {
    method: 'POST',
    url: '/broadcasters/:id/transports/:transportId/consume',
    params: transportParams,
    body: z.object({ producerId: id }),
  },
  stats: {
    method: 'GET',
    url: '/broadcasters/:id/:kind/:objectId/stats',
    params: z.object({ id, kind: z.enum(['producers', 'consumers']), objectId: id }),
    body: undefined,
  },
  remove: { method: 'DELETE', url: '/broadcasters/:id', params: broadcasterParams, body: undefined },
} as const;

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value ?? {});
  if (!result.success) throw new AppError('INVALID_REQUEST', describeIssues(result.error.issues));
  return result.data;
}

/**
 * Plain-RTP ingest (mediasoup-demo's broadcaster API): create a broadcaster
 * with a token that may publish or record, open a PlainTransport, produce from an RTP stream
 * (ffmpeg, GStreamer), delete. Later calls carry the secret answered at
 * creation as `Authorization: Bearer <secret>`.
 */
export const broadcasterRoutes: FastifyPluginAsync<{ gateway: Gateway }> = async (app, { gateway }) => {
  const secretOf = (auth: string | undefined) => (auth?.startsWith('Bearer ') ? auth.slice(7) : undefined);

  const route = <R extends keyof typeof broadcasterApi>(
    name: R,
    handler: (request: FastifyRequest, params: z.output<(typeof broadcasterApi)[R]['params']>) => Promise<unknown>,
  ) => {
    const { method, url, params } = broadcasterApi[name];
    app.route({ method, url, handler: (request) => handler(request, parse(params as z.ZodType, request.params) as never) });
  };
  const authorized = (request: FastifyRequest, broadcasterId: string) =>
    gateway.broadcaster(broadcasterId, secretOf(request.headers.authorization));

  route('create', async (request) => {
    const body = parse(broadcasterApi.create.body, request.body);
    const grant = (await gateway.tokens.consume(body.token)).session.room;
    if (!grant) throw new AppError('ROOM_NOT_GRANTED', 'a broadcaster needs a token naming a room');
    const peer = new Peer(`bc-${randomBytes(8).toString('hex')}`, grant, undefined);
    // A broadcaster streams in (publish) or out (record); a token allowing neither has nothing to do here.
    if (!peer.permissions.publish && !peer.permissions.record) {
      throw new AppError('PRODUCE_NOT_ALLOWED', `this token's role (${grant.role}) may neither publish nor record`);
    }
    const room = gateway.roomFor(grant);
    if (body.displayName) peer.displayName = body.displayName;
    peer.device = body.device ?? { name: 'broadcaster' };
    peer.rtpCapabilities = body.rtpCapabilities;
    await gateway.addPeer(room, peer);
    await room.placed(peer);
    room.enter(peer, body.listener === true);
    const secret = randomBytes(24).toString('base64url');
    gateway.broadcasters.set(peer.id, { peer, room, secret: Buffer.from(secret) });
    // However it leaves (deleted, kicked, its agent lost, its room closed), its entry and with it its room are let go.
    peer.once('close', () => gateway.broadcasters.delete(peer.id));
    return { id: peer.id, secret, roomId: room.id, rtpCapabilities: room.rtpCapabilities };
  });

  route('createTransport', async (request, params) => {
    const { peer, room } = authorized(request, params.id);
    const body = parse(broadcasterApi.createTransport.body, request.body);
    return room.broadcaster.createPlainTransport(peer, body.comedia, body.rtcpMux);
  });

  route('connect', async (request, params) => {
    const { peer, room } = authorized(request, params.id);
    const body = parse(broadcasterApi.connect.body, request.body);
    await room.broadcaster.connectPlainTransport(peer, params.transportId, body.ip, body.port, body.rtcpPort);
    return {};
  });

  route('produce', async (request, params) => {
    const { peer, room } = authorized(request, params.id);
    const body = parse(broadcasterApi.produce.body, request.body);
    return room.produce(peer, { transportId: params.transportId, ...body });
  });

  route('consume', async (request, params) => {
    const { peer, room } = authorized(request, params.id);
    const body = parse(broadcasterApi.consume.body, request.body);
    return room.broadcaster.consume(peer, params.transportId, body.producerId);
  });

  route('stats', async (request, params) => {
    const { peer, room } = authorized(request, params.id);
    return room.broadcaster.stats(peer, params.kind === 'producers' ? 'producer' : 'consumer', params.objectId);
  });

  route('remove', async (request, params) => {
    const { peer, room } = authorized(request, params.id);
    room.removePeer(peer, 'broadcaster deleted');
    return {};
  });
};
