import { cascadeHandlers } from './cascade.js';
import { cascadeDataHandlers } from './cascade-data.js';
import type { HandlerContext, Handlers } from './context.js';
import { dataHandlers } from './data.js';
import { mediaHandlers } from './media.js';
import { routerHandlers } from './router.js';
import { transportHandlers } from './transports.js';

export type { HandlerContext, Handlers } from './context.js';

/** The agent's request table, by the kind of object each request is about. */
export function agentHandlers(ctx: HandlerContext): Handlers {
  return {
    ...routerHandlers(ctx),
    ...transportHandlers(ctx),
    ...mediaHandlers(ctx),
    ...dataHandlers(ctx),
    ...cascadeHandlers(ctx),
    ...cascadeDataHandlers(ctx),
  };
}
