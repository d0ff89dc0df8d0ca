import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AppError } from '../../core/errors.js';
import type { NuveContext } from '../context.js';
import { groupName, storableText } from './schemas.js';

/** Users per add or remove call. */
export const MAX_GROUP_BATCH = 1000;

const user = storableText(256).min(1);
const groupParams = z.object({ group: groupName });
const batch = z.object({ users: z.array(user).min(1).max(MAX_GROUP_BATCH).describe(`1 to ${MAX_GROUP_BATCH} user names`) }).strict();
const pageQuery = z
  .object({
    limit: z.coerce.number().int().positive().max(1000).default(100),
    after: storableText(256).min(1).optional().describe("The previous page's `next`"),
  })
  .strict();
const next = z.string().optional().describe('Absent on the last page; else pass it as `after`');

/**
 * Group membership, per tenant: the apps say who is in which group; a room names its group (room
 * option `group`); a user online hears of the calls going on in their groups (the distributor asks
 * Nuve, `nuve.groups.calls`). Adding and removing are idempotent batches; lists are keyset pages.
 */
export const groupsRoutes: FastifyPluginAsyncZod<{ ctx: NuveContext }> = async (app, { ctx }) => {
  const { groups } = ctx.store;
  // A full batch of the longest names, escaped at worst (6 bytes a character).
  const bodyLimit = Math.max(ctx.config.nuve.bodyLimitBytes, MAX_GROUP_BATCH * 256 * 6 + 1024);

  app.post(
    '/groups/:group/members',
    {
      bodyLimit,
      schema: {
        summary: 'Add users to a group',
        description: 'Users already in it stay as they are: `added` counts the new ones. A group exists once it has a member or a room.',
        tags: ['groups'],
        params: groupParams,
        body: batch,
        response: { 200: z.object({ added: z.number() }) },
      },
    },
    async (request) => ({ added: await groups.addMembers(request.service.id, request.params.group, request.body.users) }),
  );

  app.post(
    '/groups/:group/members/remove',
    {
      bodyLimit,
      schema: {
        summary: 'Remove users from a group',
        description: 'Users not in it are ignored: `removed` counts those that were.',
        tags: ['groups'],
        params: groupParams,
        body: batch,
        response: { 200: z.object({ removed: z.number() }) },
      },
    },
    async (request) => ({ removed: await groups.removeMembers(request.service.id, request.params.group, request.body.users) }),
  );

  app.get(
    '/groups/:group/members',
    {
      schema: {
        summary: "A group's members, by name",
        tags: ['groups'],
        params: groupParams,
        querystring: pageQuery,
        response: { 200: z.object({ members: z.array(z.object({ user: z.string(), addedAt: z.number() })), next }) },
      },
    },
    async (request) => {
      const page = await groups.members(request.service.id, request.params.group, request.query.limit, request.query.after);
      return { members: page.items, ...(page.next !== undefined && { next: page.next }) };
    },
  );

  app.get(
    '/users/:user/groups',
    {
      schema: {
        summary: "A user's groups, by name",
        tags: ['groups'],
        params: z.object({ user }),
        querystring: pageQuery,
        response: { 200: z.object({ groups: z.array(z.string()), next }) },
      },
    },
    async (request) => {
      const page = await groups.groupsOf(request.service.id, request.params.user, request.query.limit, request.query.after);
      return { groups: page.items, ...(page.next !== undefined && { next: page.next }) };
    },
  );

  app.delete(
    '/groups/:group',
    {
      schema: {
        summary: 'Delete a group',
        description: 'Removes every member and takes the group off its rooms (the rooms stay, in no group).',
        tags: ['groups'],
        params: groupParams,
        response: { 200: z.object({ members: z.number(), rooms: z.number() }) },
      },
    },
    async (request) => {
      const deleted = await groups.deleteGroup(request.service.id, request.params.group);
      if (!deleted) throw new AppError('GROUP_NOT_FOUND');
      return deleted;
    },
  );
};
