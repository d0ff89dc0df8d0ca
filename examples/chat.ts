/**
 * A chat service: users join rooms and their messages reach the room's members as pushes (s2c).
 *
 *   npm start -- --service ./examples/chat.ts
 *
 * Clients (session token with the scopes `rpc` and `push`):
 *   session.call('chat', 'join', { room: 'lobby' })
 *   session.call('chat', 'say', { room: 'lobby', text: 'hi' })
 * and receive `{ room, from, text }` on `session.on('push')`. Members are kept in the instance's
 * memory, so every method declares `hashKey: 'room'`: callers route a room's calls by consistent
 * hash on its name, to one instance while the set of instances stays, with any number of instances.
 * When an instance joins or leaves, the rooms the ring moves start empty on their new instance:
 * `say` then answers NOT_FOUND and the client joins again.
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
      hashKey: 'room',
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
      hashKey: 'room',
      handler: ({ room }, ctx) => {
        const key = keyOf(ctx.caller.tenant, room);
        members.get(key)?.delete(ctx.caller.user);
        if (members.get(key)?.size === 0) members.delete(key);
        return {};
      },
    },
    /** Ordered: one user's messages reach the room in the order they were said (ordered per room: it hashes on it). */
    say: {
      input: z.object({ room, text: z.string().min(1).max(2000) }).strict(),
      access: 'external',
      ordered: true,
      hashKey: 'room',
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
      hashKey: 'room',
      handler: ({ room }, ctx) => ({ members: [...(members.get(keyOf(ctx.caller.tenant, room)) ?? [])] }),
    },
  },
});
