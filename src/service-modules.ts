import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Platform } from './platform.js';
import type { ServiceDefinition } from './services/define.js';
import { type RunningService, startService } from './services/start.js';

/** The chat service the playground's chat panel calls (through the gateway; messages arrive as pushes). */
export const PLAYGROUND_CHAT = fileURLToPath(new URL('../examples/chat.ts', import.meta.url));

/**
 * Starts each `--service` module's default export (from defineService) as an instance on the platform's bus.
 * With the playground on in this process (Nuve's dev endpoints, and a gateway) it also starts the example chat
 * (`examples/chat.ts`) unless a given module already is the `chat` service. Stops those it started if one fails.
 */
export async function loadServiceModules(paths: string[], platform: Platform): Promise<RunningService[]> {
  const playground = platform.nuve !== undefined && platform.gateway !== undefined && platform.config.nuve.devEndpoints;
  const running: RunningService[] = [];
  try {
    for (const path of paths) running.push(await startModule(path, platform));
    if (playground && !running.some((s) => s.host.definition.name === 'chat')) {
      if (existsSync(PLAYGROUND_CHAT)) running.push(await startModule(PLAYGROUND_CHAT, platform));
      else platform.logger.warn({ path: PLAYGROUND_CHAT }, 'the playground chat service is missing: its chat panel stays off');
    }
    return running;
  } catch (err) {
    await Promise.all(running.map((s) => s.stop()));
    throw err;
  }
}

async function startModule(path: string, platform: Platform): Promise<RunningService> {
  const module = (await import(pathToFileURL(resolve(path)).href)) as { default?: ServiceDefinition };
  const definition = module.default;
  if (!definition || typeof definition.name !== 'string' || typeof definition.methods !== 'object') {
    throw new Error(`${path}: its default export is not a service (export default defineService({...}))`);
  }
  return startService(definition, { bus: platform.bus, config: platform.config, logger: platform.logger, metrics: platform.metrics });
}
