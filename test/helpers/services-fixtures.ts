import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineService } from '../../src/services/index.js';

/** One run of a handler, as the fixture service records it. */
export interface Execution {
  instance: string;
  method: string;
  user: string;
  tenant: string;
  kind: string;
  client?: string;
  n?: number;
}

/**
 * The test service: every way a handler can answer (value, slow, throw, never),
 * an internal method, an ordered method recording its sequence, and a push.
 * Executions are recorded in `log` (in the order the handlers started).
 */
export function echoService(log: Execution[] = [], name = 'echo') {
  const record = (method: string, ctx: { instance: string; caller: { user: string; tenant: string; kind: string } }, extra: Partial<Execution> = {}) =>
    log.push({ instance: ctx.instance, method, user: ctx.caller.user, tenant: ctx.caller.tenant, kind: ctx.caller.kind, ...extra });
  return defineService({
    name,
    version: '1.0.0',
    methods: {
      whoami: {
        input: z.object({}).strict().optional(),
        access: 'external',
        handler: (_args, ctx) => {
          record('whoami', ctx);
          return { instance: ctx.instance, caller: ctx.caller };
        },
      },
      slow: {
        input: z.object({ ms: z.number().int().min(0).max(60_000) }).strict(),
        access: 'external',
        handler: async ({ ms }, ctx) => {
          record('slow', ctx);
          await sleep(ms);
          return { instance: ctx.instance };
        },
      },
      /** Ordered by declaration: each client's calls run one at a time in call order. */
      seq: {
        input: z.object({ client: z.string(), n: z.number().int(), delayMs: z.number().int().min(0).max(1000).default(0) }).strict(),
        access: 'external',
        ordered: true,
        handler: async ({ client, n, delayMs }, ctx) => {
          record('seq', ctx, { client, n });
          if (delayMs > 0) await sleep(Math.random() * delayMs);
          record('seq-end', ctx, { client, n });
          return { instance: ctx.instance, n };
        },
      },
      secret: {
        input: z.object({}).strict().optional(),
        access: 'internal',
        handler: (_args, ctx) => ({ secret: 42, user: ctx.caller.user, tenant: ctx.caller.tenant, kind: ctx.caller.kind }),
      },
      boom: {
        input: z.object({}).strict().optional(),
        access: 'external',
        handler: () => {
          throw new Error('database password is hunter2');
        },
      },
      hang: {
        input: z.object({}).strict().optional(),
        access: 'external',
        timeoutMs: 300,
        handler: () => new Promise(() => undefined),
      },
      /** s2s: asks another service's internal method for the same caller. */
      relay: {
        input: z.object({ service: z.string(), method: z.string() }).strict(),
        access: 'external',
        handler: ({ service, method }, ctx) => ctx.call(service, method, {}),
      },
      /** Routed by hash on its `room` argument, whatever the caller names (state kept by room). */
      byRoom: {
        input: z.object({ room: z.string().min(1).max(64) }).strict(),
        access: 'external',
        hashKey: 'room',
        handler: (_args, ctx) => ({ instance: ctx.instance }),
      },
      /** Answers `bytes` of text: for the instance's bound on answers (services.maxReplyBytes). */
      blob: {
        input: z.object({ bytes: z.number().int().min(0).max(4_000_000) }).strict(),
        access: 'external',
        handler: ({ bytes }, ctx) => ({ instance: ctx.instance, blob: 'x'.repeat(bytes) }),
      },
      push: {
        input: z.object({ users: z.array(z.string()).min(1), text: z.string(), safe: z.boolean().default(false) }).strict(),
        access: 'external',
        handler: ({ users, text, safe }, ctx) => ctx.push(users, { text, from: ctx.caller.user }, { safe }),
      },
    },
  });
}
