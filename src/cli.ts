import { parseArgs } from 'node:util';
import { ConfigError, isLoopbackHost, loadConfig } from './core/config.js';
import { createLogger } from './core/logger.js';
import { type Platform, roles as registry, startPlatform } from './platform.js';
import { loadServiceModules } from './service-modules.js';

const USAGE = `usage: mediasoup-signal [all|${registry.names().join('|')}] [--config file.(json|yaml)] [--service ./chat.ts ...]

--service loads a service module (its default export, from defineService) into this process, on its bus.
With the playground on (\`all\` on loopback without a config file), examples/chat.ts is loaded too, for its chat.

Configuration: defaults < config file (--config or MSS_CONFIG) < MSS_* environment
variables (MSS_NUVE__PORT=3001, MSS_STORE__DRIVER=postgres, ...).`;

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
      service: { type: 'string', multiple: true, short: 's' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const role = positionals[0] ?? 'all';
  if (role !== 'all' && !registry.names().includes(role)) {
    console.error(`unknown role "${role}"\n${USAGE}`);
    process.exit(2);
  }
  let config;
  try {
    config = loadConfig({ file: values.config });
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
  // Embedded `all` on loopback without configuration: the playground's dev endpoints are on (MSS_NUVE__DEV_ENDPOINTS=false: off).
  const configured = values.config ?? process.env.MSS_CONFIG ?? process.env.MSS_NUVE__DEV_ENDPOINTS;
  if (role === 'all' && configured === undefined && isLoopbackHost(config.nuve.host)) config.nuve.devEndpoints = true;
  const logger = createLogger(config.log);
  const platform = await startPlatform(config, role === 'all' ? registry.names() : [role], logger);

  const services = await loadServiceModules(values.service ?? [], platform).catch(async (err: unknown) => {
    logger.error({ err }, 'a --service module failed to start');
    await platform.close();
    process.exit(1);
  });

  console.log(
    [
      `mediasoup-signal started (${platform.roles.join(', ')})`,
      ...platform.describe().map((line) => `  ${line}`),
      ...services.map((s) => `  Service:       ${s.host.definition.name} ${s.host.definition.version} (${s.id})`),
    ].join('\n'),
  );

  // First SIGTERM/SIGINT: drain (no new rooms, existing calls go on) and exit by ourselves when empty
  // or at the grace period. A second signal exits at once.
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'draining before exit');
    Promise.all(services.map((s) => s.stop()))
      .then(() => platform.drain())
      .then(() => platform.close())
      .then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, 'error while stopping');
          process.exit(1);
        },
      );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
