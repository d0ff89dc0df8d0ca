import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AppError } from '../../core/errors.js';
import { allowsRemoteUnmute } from './settings.js';
import { type ParticipantView, participantChangesSchema, roomDataSchema } from '../../core/subjects.js';
import type { NuveContext } from '../context.js';
import type { RoomRecord } from '../store/store.js';
import { askGateway } from './gateway-rpc.js';
import { roomNotFound } from './rooms.js';
import { roomParams, storableText } from './schemas.js';

const participantParams = roomParams.extend({ participant: storableText(64).min(1) });
const trackParams = participantParams.extend({ track: storableText(64).min(1) });

const participantView = z.object({
  id: z.string(),
  identity: z.string(),
  name: z.string(),
  role: z.string(),
  joined: z.boolean(),
  metadata: z.unknown().optional(),
  permissions: z.object({ publish: z.boolean(), subscribe: z.boolean(), publishData: z.boolean() }),
  tracks: z.array(z.object({ id: z.string(), kind: z.enum(['audio', 'video']), muted: z.boolean() })),
}) satisfies z.ZodType<ParticipantView>;

const participantNotFound = () => new AppError('PARTICIPANT_NOT_FOUND');

/** A gateway's answer, checked: one of another version or a broken one is a 502, not a crash. */
function fromGateway<T>(schema: z.ZodType<T>, value: unknown): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new AppError('GATEWAY_UNAVAILABLE', 'gateway answered malformed participants', { status: 502 });
  return parsed.data;
}

/**
 * The room API: a tenant's live rooms and their participants (by peer id) with their tracks (by
 * producer id), and what the app changes in them. The room's gateway holds that state and does
 * the changes (`gateway.<id>.rpc`); its peers are told by notification, the webhook by event.
 */
export const participantsRoutes: FastifyPluginAsyncZod<{ ctx: NuveContext }> = async (app, { ctx }) => {
  async function room(serviceId: string, roomId: string): Promise<RoomRecord> {
    const record = await ctx.store.getRoom(serviceId, roomId);
    if (!record) throw roomNotFound();
    return record;
  }

  const participants = async (record: RoomRecord) =>
    fromGateway(participantView.array(), (await askGateway<unknown>(ctx, record, { method: 'listParticipants', roomId: record.id })) ?? []);

  app.get(
    '/live/rooms',
    {
      schema: {
        summary: "The service's rooms that have participants now, with their counts",
        tags: ['room API'],
        response: { 200: z.array(z.object({ id: z.string(), name: z.string(), participants: z.number(), tracks: z.number() })) },
      },
    },
    async (request) => {
      const hosted = (await ctx.store.listRooms(request.service.id)).filter((r) => r.gatewayId !== null);
      const live = await Promise.all(
        hosted.map(async (r) => {
          // A gateway gone silent leaves its rooms out rather than failing the whole list.
          const list = await participants(r).catch(() => []);
          return { id: r.id, name: r.name, participants: list.length, tracks: list.reduce((n, p) => n + p.tracks.length, 0) };
        }),
      );
      return live.filter((r) => r.participants > 0);
    },
  );

  app.get(
    '/rooms/:room/participants',
    { schema: { summary: 'Participants connected to a room, with their tracks', tags: ['room API'], params: roomParams, response: { 200: z.array(participantView) } } },
    async (request) => participants(await room(request.service.id, request.params.room)),
  );

  app.get(
    '/rooms/:room/participants/:participant',
    { schema: { summary: 'One participant', tags: ['room API'], params: participantParams, response: { 200: participantView } } },
    async (request) => {
      const found = (await participants(await room(request.service.id, request.params.room))).find((p) => p.id === request.params.participant);
      if (!found) throw participantNotFound();
      return found;
    },
  );

  app.patch(
    '/rooms/:room/participants/:participant',
    {
      schema: {
        summary: "Change a connected participant's name, metadata or permissions (revoking publish closes its tracks)",
        tags: ['room API'],
        params: participantParams,
        body: participantChangesSchema,
        response: { 200: participantView },
      },
    },
    async (request) => {
      const record = await room(request.service.id, request.params.room);
      const view = await askGateway(ctx, record, { method: 'updateParticipant', roomId: record.id, peerId: request.params.participant, changes: request.body });
      if (view === undefined) throw participantNotFound();
      return fromGateway(participantView, view);
    },
  );

  app.post(
    '/rooms/:room/participants/:participant/tracks/:track/mute',
    {
      schema: {
        summary: 'Mute or unmute a published track (unmuting only where the tenant allows it: PATCH /settings)',
        tags: ['room API'],
        params: trackParams,
        body: z.object({ muted: z.boolean() }).strict(),
        response: { 200: participantView },
      },
    },
    async (request) => {
      if (!request.body.muted && !(await allowsRemoteUnmute(ctx, request.service.id))) throw new AppError('REMOTE_UNMUTE_NOT_ALLOWED');
      const record = await room(request.service.id, request.params.room);
      const view = await askGateway(ctx, record, {
        method: 'setTrackMuted',
        roomId: record.id,
        peerId: request.params.participant,
        trackId: request.params.track,
        muted: request.body.muted,
      });
      if (view === undefined) throw participantNotFound();
      return fromGateway(participantView, view);
    },
  );

  app.post(
    '/rooms/:room/data',
    {
      schema: {
        summary: 'Send data with a topic to every joined participant, or to those named',
        tags: ['room API'],
        params: roomParams,
        body: roomDataSchema,
        response: { 200: z.object({ delivered: z.number() }) },
      },
    },
    async (request) => {
      const record = await room(request.service.id, request.params.room);
      const delivered = await askGateway<unknown>(ctx, record, { method: 'sendData', roomId: record.id, data: request.body });
      if (delivered === undefined && request.body.participants) throw participantNotFound();
      return { delivered: fromGateway(z.number().int().nonnegative(), delivered ?? 0) };
    },
  );

  app.post(
    '/rooms/:room/close',
    { schema: { summary: 'Disconnect everyone and end the live room (the room itself stays)', tags: ['room API'], params: roomParams } },
    async (request, reply) => {
      const record = await room(request.service.id, request.params.room);
      await askGateway(ctx, record, { method: 'closeRoom', roomId: record.id });
      return reply.code(204).send();
    },
  );
};
