/**
 * A leaderboard service: players submit scores, anyone reads the top 10; game servers (trusted) or other
 * services may reset a board. `npm start -- --service ./examples/leaderboard.ts`
 *
 *   session.call('leaderboard', 'submit', { board: 'weekly', score: 1200 })
 *   session.call('leaderboard', 'top', { board: 'weekly' })
 *
 * Boards live in the instance's memory: every method declares `hashKey: 'board'`, so callers route a
 * board's calls by consistent hash on its name (one instance per board while the instances stay).
 */
import { z } from 'zod';
import { defineService } from 'mediasoup-signal/service';

const board = z.string().min(1).max(64);
const TOP = 10;
/** Each board's best score per user, by tenant and board. */
const boards = new Map<string, Map<string, number>>();
const MAX_ENTRIES = 100_000;

function boardOf(tenant: string, name: string): Map<string, number> {
  const key = `${tenant}\n${name}`;
  let scores = boards.get(key);
  if (!scores) boards.set(key, (scores = new Map()));
  return scores;
}

function top(scores: Map<string, number>): { user: string; score: number }[] {
  return [...scores]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, TOP)
    .map(([user, score]) => ({ user, score }));
}

export default defineService({
  name: 'leaderboard',
  version: '1.0.0',
  methods: {
    submit: {
      input: z.object({ board, score: z.number().int().min(0).max(1e12) }).strict(),
      access: 'external',
      hashKey: 'board',
      handler: ({ board, score }, ctx) => {
        const scores = boardOf(ctx.caller.tenant, board);
        const best = scores.get(ctx.caller.user);
        if ((best === undefined && scores.size < MAX_ENTRIES) || (best !== undefined && score > best)) scores.set(ctx.caller.user, score);
        return { best: scores.get(ctx.caller.user) ?? null, top: top(scores) };
      },
    },
    top: {
      input: z.object({ board }).strict(),
      access: 'external',
      hashKey: 'board',
      handler: ({ board }, ctx) => ({ top: top(boardOf(ctx.caller.tenant, board)) }),
    },
    reset: {
      input: z.object({ board }).strict(),
      access: 'internal',
      hashKey: 'board',
      handler: ({ board }, ctx) => {
        boards.delete(`${ctx.caller.tenant}\n${board}`);
        return {};
      },
    },
  },
});
