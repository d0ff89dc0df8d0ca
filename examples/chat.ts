/**
 * A chat service: users join rooms and their messages reach the room's members as pushes (s2c).
 *
 *   npm start -- --service ./examples/chat.ts
 *
 * Clients (session token with the scopes `rpc` and `push`):
 *   session.call('chat', 'join', { room: 'lobby' }, { strategy: 'hash', key: 'lobby' })
 *   session.call('chat', 'say', { room: 'lobby', text: 'hi' }, { strategy: 'hash', key: 'lobby' })
 * and receive `{ room, from, text }` on `session.on('push')`. Members are kept in the instance's
 * memory, so a room's calls hash on its name (one instance per room while it lives).
 */
import { z } from 'zod';
import { AppError, defineService } from 'mediasoup-signal/service';

const room = z.string().min(1).max(64);
/** Members by tenant and room: rooms are the tenant's own. */
const members = new Map<string, Set<string>>();
const keyOf = (tenant: string, name: string) => `${tenant}\n${name}`;
const MAX_MEMBERS = 1000;

export default defineService({
  name: 'chat',
  version: '1.0.0',
  methods: {
    join: {
      input: z.object({ room }).strict(),
      access: 'external',
      handler: ({ room }, ctx) => {
        const key = keyOf(ctx.caller.tenant, room);
        const set = members.get(key) ?? new Set<string>();
        if (set.size >= MAX_MEMBERS && !set.has(ctx.caller.user)) throw new AppError('RATE_LIMITED', 'this room is full');
        set.add(ctx.caller.user);
        members.set(key, set);
        return { members: [...set] };
      },
    },
    leave: {
      input: z.object({ room }).strict(),
      access: 'external',
      handler: ({ room }, ctx) => {
        const key = keyOf(ctx.caller.tenant, room);
        members.get(key)?.delete(ctx.caller.user);
        if (members.get(key)?.size === 0) members.delete(key);
        return {};
      },
    },
    /** Ordered: one user's messages reach the room in the order they were said. */
    say: {
      input: z.object({ room, text: z.string().min(1).max(2000) }).strict(),
      access: 'external',
      ordered: true,
      handler: async ({ room, text }, ctx) => {
        const set = members.get(keyOf(ctx.caller.tenant, room));
        if (!set?.has(ctx.caller.user)) throw new AppError('NOT_FOUND', 'join the room first');
        const { reached } = await ctx.push([...set], { room, from: ctx.caller.user, text });
        return { reached };
      },
    },
    /** For the app's servers (trusted) and other services: who is in a room. */
    members: {
      input: z.object({ room }).strict(),
      access: 'internal',
      handler: ({ room }, ctx) => ({ members: [...(members.get(keyOf(ctx.caller.tenant, room)) ?? [])] }),
    },
  },
});
