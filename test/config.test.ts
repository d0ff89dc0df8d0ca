import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { z } from 'zod';
import { ConfigError, configSchema, envOverrides, loadConfig, parseConfig } from '../src/core/config.js';

const dir = mkdtempSync(join(tmpdir(), 'mss-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

/** Fails with a ConfigError whose message names `key`. */
function failsNaming(fn: () => unknown, key: string | RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `ConfigError expected, got ${String(err)}`);
    if (typeof key === 'string') assert.ok(err.message.includes(key), `"${key}" not named in: ${err.message}`);
    else assert.match(err.message, key);
    return true;
  });
}

describe('configuration', () => {
  test('defaults describe the embedded platform', () => {
    const config = loadConfig({ env: {} });
    assert.equal(config.bus.driver, 'memory');
    assert.equal(config.store.driver, 'sqlite');
    assert.equal(config.nuve.port, 3000);
    assert.equal(config.nuve.host, '127.0.0.1');
    assert.equal(config.nuve.tokenTtlSec, 180);
    assert.equal(config.nuve.superService.name, 'superService');
    assert.equal(config.nuve.superService.id, undefined);
    assert.equal(config.log.level, 'info');
  });

  test('an invalid environment value fails naming the key', () => {
    failsNaming(() => loadConfig({ env: { MSS_NUVE__PORT: 'abc' } }), 'nuve.port');
    failsNaming(() => loadConfig({ env: { MSS_NUVE__PORT: '70000' } }), 'nuve.port');
    failsNaming(() => loadConfig({ env: { MSS_STORE__DRIVER: 'mongodb' } }), 'store.driver');
    failsNaming(() => loadConfig({ env: { MSS_NUVE__SUPER_SERVICE__KEY: 'short' } }), 'nuve.superService.key');
    failsNaming(() => loadConfig({ env: { MSS_NUVE__SUPER_SERVICE__ID: 'XYZ' } }), 'nuve.superService.id');
    failsNaming(() => loadConfig({ env: { MSS_NUVE__TOKEN_TTL_SEC: '-5' } }), 'nuve.tokenTtlSec');
    failsNaming(() => loadConfig({ env: { MSS_NUVE__BOGUS: '1' } }), /nuve\.bogus: unknown key/);
    failsNaming(() => loadConfig({ env: { MSS_BUS__DRIVER: 'kafka' } }), 'bus.driver');
    failsNaming(() => loadConfig({ env: { MSS_BUS__AMQP_URL: 'nats://127.0.0.1:4222' } }), 'bus.amqpUrl');
    failsNaming(() => loadConfig({ env: { MSS_BUS__AMQP_URL: 'not a url' } }), 'bus.amqpUrl');
  });

  test('agent.routerConsumerLimit: default 1500, 0 keeps one router per room, from the environment; not negative or fractional', () => {
    assert.equal(loadConfig({ env: {} }).agent.routerConsumerLimit, 1500);
    assert.equal(loadConfig({ env: { MSS_AGENT__ROUTER_CONSUMER_LIMIT: '0' } }).agent.routerConsumerLimit, 0);
    assert.equal(loadConfig({ env: { MSS_AGENT__ROUTER_CONSUMER_LIMIT: '400' } }).agent.routerConsumerLimit, 400);
    failsNaming(() => loadConfig({ env: { MSS_AGENT__ROUTER_CONSUMER_LIMIT: '-1' } }), 'agent.routerConsumerLimit');
    failsNaming(() => loadConfig({ env: { MSS_AGENT__ROUTER_CONSUMER_LIMIT: '1.5' } }), 'agent.routerConsumerLimit');
  });

  test('the RabbitMQ bus is chosen with its broker URL', () => {
    const { bus } = loadConfig({ env: { MSS_BUS__DRIVER: 'rabbitmq', MSS_BUS__AMQP_URL: 'amqps://user:pass@mq.example.com:5671/vhost' } });
    assert.deepEqual([bus.driver, bus.amqpUrl], ['rabbitmq', 'amqps://user:pass@mq.example.com:5671/vhost']);
  });

  test('every problem is reported, not only the first', () => {
    failsNaming(() => loadConfig({ env: { MSS_NUVE__PORT: 'abc', MSS_GATEWAY__WEIGHT: '0' } }), /nuve\.port[\s\S]*gateway\.weight|gateway\.weight[\s\S]*nuve\.port/);
  });

  test('environment values get their types; text settings stay text', () => {
    const config = loadConfig({
      env: {
        MSS_NUVE__PORT: '4000',
        MSS_LOG__PRETTY: 'true',
        MSS_LOG__LEVEL: 'debug',
        MSS_GATEWAY__WEIGHT: '2.5',
        MSS_NUVE__SUPER_SERVICE__ID: '123456789012345678901234',
        MSS_NUVE__SUPER_SERVICE__KEY: '1234567890123456',
        MSS_GATEWAY__ID: '42',
        MSS_STORE__POSTGRES_URL: 'postgres://db/x',
        UNRELATED: 'ignored',
      },
    });
    assert.equal(config.nuve.port, 4000);
    assert.equal(config.log.pretty, true);
    assert.equal(config.log.level, 'debug');
    assert.equal(config.gateway.weight, 2.5);
    assert.equal(config.nuve.superService.id, '123456789012345678901234', 'an all-digit id stays a string');
    assert.equal(config.nuve.superService.key, '1234567890123456');
    assert.equal(config.gateway.id, '42');
    assert.equal(config.store.postgresUrl, 'postgres://db/x');
  });

  test('env names map to nested camelCase keys', () => {
    assert.deepEqual(envOverrides({ MSS_NUVE__SUPER_SERVICE__NAME: 'root', MSS_BUS__REQUEST_TIMEOUT_MS: '10', OTHER: 'x' }), {
      nuve: { superService: { name: 'root' } },
      bus: { requestTimeoutMs: 10 },
    });
    assert.deepEqual(envOverrides({ MSS_CONFIG: '/etc/x.yaml' }), {}, 'MSS_CONFIG names the file, it is no setting');
  });

  test('a YAML file is layered over the defaults', () => {
    const path = file(
      'cluster.yaml',
      ['store:', '  driver: postgres', '  poolSize: 20', 'nuve:', '  port: 3100', '  superService:', '    name: operator', ''].join('\n'),
    );
    const config = loadConfig({ file: path, env: {} });
    assert.equal(config.store.driver, 'postgres');
    assert.equal(config.store.poolSize, 20);
    assert.equal(config.store.sqlitePath, './data/mediasoup-signal.db', 'untouched siblings keep defaults');
    assert.equal(config.nuve.port, 3100);
    assert.equal(config.nuve.superService.name, 'operator');
    assert.equal(config.nuve.tokenTtlSec, 180);
  });

  test('a JSON file works the same, and MSS_CONFIG names it', () => {
    const path = file('cluster.json', JSON.stringify({ nuve: { port: 3200, tokenTtlSec: 60 }, log: { level: 'warn' } }));
    const config = loadConfig({ env: { MSS_CONFIG: path } });
    assert.equal(config.nuve.port, 3200);
    assert.equal(config.nuve.tokenTtlSec, 60);
    assert.equal(config.log.level, 'warn');
  });

  test('environment overrides the file, explicit overrides beat both', () => {
    const path = file('layered.yml', 'nuve:\n  port: 3300\n  tokenTtlSec: 60\ngateway:\n  weight: 3\n');
    const config = loadConfig({ file: path, env: { MSS_NUVE__PORT: '3400' } });
    assert.equal(config.nuve.port, 3400);
    assert.equal(config.nuve.tokenTtlSec, 60, 'file values the environment does not touch remain');
    assert.equal(config.gateway.weight, 3);
    const overridden = loadConfig({ file: path, env: { MSS_NUVE__PORT: '3400' }, overrides: { nuve: { port: 0 } } });
    assert.equal(overridden.nuve.port, 0);
    assert.equal(overridden.nuve.tokenTtlSec, 60);
  });

  test('bad files fail with the file named', () => {
    failsNaming(() => loadConfig({ file: join(dir, 'missing.yaml'), env: {} }), 'missing.yaml');
    failsNaming(() => loadConfig({ file: file('broken.yaml', 'nuve: [unclosed\n'), env: {} }), 'broken.yaml');
    failsNaming(() => loadConfig({ file: file('broken.json', '{"nuve": '), env: {} }), 'broken.json');
    failsNaming(() => loadConfig({ file: file('list.yaml', '- 1\n- 2\n'), env: {} }), 'top level must be an object');
    failsNaming(() => loadConfig({ file: file('unknown.yaml', 'nuve:\n  prot: 1\n'), env: {} }), /nuve\.prot: unknown key/);
    failsNaming(() => loadConfig({ file: file('typed.yaml', 'nuve:\n  port: "eighty"\n'), env: {} }), 'nuve.port');
  });

  test('roles: added to presenter and viewer from a file or the environment, validated strictly', () => {
    const yaml = file('roles.yaml', 'nuve:\n  roles:\n    role: { publish: true }\n    viewer: { subscribe: true, publishData: true }\n');
    const config = loadConfig({ file: yaml, env: { MSS_NUVE__ROLES__VIEWER_WITH_DATA__PUBLISH_DATA: 'true' } });
    assert.deepEqual(config.nuve.roles, {
      presenter: { publish: true, subscribe: true, publishData: true, record: true },
      viewer: { publish: false, subscribe: true, publishData: true, record: false },
      role: { publish: true, subscribe: false, publishData: false, record: false },
      viewerWithData: { publish: false, subscribe: false, publishData: true, record: false },
    });
    assert.deepEqual(Object.keys(loadConfig({ env: {} }).nuve.roles), ['presenter', 'viewer']);
    failsNaming(() => loadConfig({ env: {}, overrides: { nuve: { roles: { role: { publish: true, admin: true } as never } } } }), /nuve\.roles\.role\.admin: unknown key/);
    failsNaming(() => loadConfig({ env: {}, overrides: { nuve: { roles: { 'a,b': { publish: true } } } } }), 'nuve.roles');
    failsNaming(() => loadConfig({ env: {}, overrides: { nuve: { roles: { role: { publish: 'yes' as never } } } } }), 'nuve.roles.role.publish');
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`r${i}`, { publish: true }]));
    failsNaming(() => loadConfig({ env: {}, overrides: { nuve: { roles: many } } }), /nuve\.roles: at most 64 roles/);
  });

  test('a misspelt key in tracing, nuve.rateLimit or gateway.rateLimit is refused, not dropped', () => {
    failsNaming(() => loadConfig({ env: { MSS_TRACING__ENABLE: 'true' } }), /tracing\.enable: unknown key/);
    failsNaming(() => loadConfig({ env: { MSS_NUVE__RATE_LIMIT__PER_IP_PER_SECOND: '5' } }), /nuve\.rateLimit\.perIpPerSecond: unknown key/);
    failsNaming(() => loadConfig({ env: { MSS_GATEWAY__RATE_LIMIT__CONNECTIONS_PER_SEC_IP: '5' } }), /gateway\.rateLimit\.connectionsPerSecIp: unknown key/);
  });

  test('every section of the schema is strict', () => {
    // Walks the schema so a section added later without .strict() fails here too.
    const unwrap = (node: z.core.$ZodType): z.core.$ZodType => {
      let inner = node;
      while (['default', 'prefault', 'optional', 'nullable', 'pipe'].includes(inner._zod.def.type)) {
        const def = inner._zod.def as unknown as { innerType?: z.core.$ZodType; in?: z.core.$ZodType };
        inner = (def.innerType ?? def.in)!;
      }
      return inner;
    };
    const sections: string[][] = [];
    const walk = (node: z.core.$ZodType, path: string[]): void => {
      const inner = unwrap(node);
      if (inner._zod.def.type !== 'object') return;
      sections.push(path);
      for (const [key, child] of Object.entries((inner._zod.def as z.core.$ZodObjectDef).shape)) walk(child, [...path, key]);
    };
    walk(configSchema, []);
    assert.ok(sections.length >= 15, `only ${sections.length} sections found`);
    for (const path of sections) {
      const input: Record<string, unknown> = {};
      let node = input;
      for (const key of path) node = node[key] = {};
      node.misspelt = 1;
      failsNaming(() => parseConfig(input), `${[...path, 'misspelt'].join('.')}: unknown key`);
    }
  });

  test('parseConfig refuses unknown top-level sections', () => {
    failsNaming(() => parseConfig({ nuvee: {} }), /nuvee: unknown key/);
  });

  test('developer endpoints are refused on any host but loopback', () => {
    for (const host of ['0.0.0.0', '::', '[::]', '10.1.2.3', '::ffff:10.0.0.1', 'nuve.example.com', '']) {
      failsNaming(() => loadConfig({ env: { MSS_NUVE__DEV_ENDPOINTS: 'true', MSS_NUVE__HOST: host } }), 'nuve.devEndpoints');
    }
    for (const host of ['127.0.0.1', '127.0.0.2', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) {
      assert.equal(loadConfig({ env: { MSS_NUVE__DEV_ENDPOINTS: 'true', MSS_NUVE__HOST: host } }).nuve.devEndpoints, true, host);
    }
    assert.equal(loadConfig({ env: { MSS_NUVE__HOST: '0.0.0.0' } }).nuve.devEndpoints, false, 'without them any host is fine');
  });

  test('a Nuve asked for developer endpoints on 0.0.0.0 does not start', { timeout: 30_000 }, async () => {
    const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'nuve'], {
      env: { ...process.env, MSS_NUVE__DEV_ENDPOINTS: 'true', MSS_NUVE__HOST: '0.0.0.0', MSS_NUVE__PORT: '0', MSS_STORE__SQLITE_PATH: ':memory:' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    proc.stdout.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const started = setInterval(() => {
      if (output.includes('mediasoup-signal started')) proc.kill('SIGKILL');
    }, 50);
    const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
    clearInterval(started);
    assert.equal(code, 78, output);
    assert.match(output, /nuve\.devEndpoints/);
  });
});
