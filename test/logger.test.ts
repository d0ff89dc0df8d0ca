import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { loadConfig } from '../src/core/config.js';
import { resolveLogFormat } from '../src/core/logger.js';

const run = promisify(execFile);

/** What a process that logs one line with these options prints (stdout is a pipe here). */
async function logLine(options: object): Promise<string> {
  const script = `
    import { createLogger } from './src/core/logger.ts';
    const log = createLogger(${JSON.stringify({ level: 'info', ...options })});
    log.info({ room: 'r1' }, 'hello');
    setTimeout(() => process.exit(0), 300); // the pretty transport writes from a worker thread
  `;
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: { ...process.env, NO_COLOR: '1' } });
  return stdout.trim();
}

describe('log format', () => {
  test('auto: readable on a terminal, JSON otherwise; an explicit format or the old pretty switch wins', () => {
    assert.equal(resolveLogFormat({ format: 'auto' }, true), 'pretty');
    assert.equal(resolveLogFormat({ format: 'auto' }, false), 'json');
    assert.equal(resolveLogFormat({}, true), 'pretty');
    assert.equal(resolveLogFormat({ format: 'json' }, true), 'json');
    assert.equal(resolveLogFormat({ format: 'pretty' }, false), 'pretty');
    assert.equal(resolveLogFormat({ pretty: true }, false), 'pretty');
    assert.equal(resolveLogFormat({ pretty: false }, true), 'json');
    assert.equal(resolveLogFormat({ format: 'json', pretty: true }, true), 'json');
  });

  test('configuration: log.format (MSS_LOG__FORMAT), default auto; anything else is refused', () => {
    assert.equal(loadConfig({ env: {} }).log.format, 'auto');
    assert.equal(loadConfig({ env: { MSS_LOG__FORMAT: 'json' } }).log.format, 'json');
    assert.throws(() => loadConfig({ env: { MSS_LOG__FORMAT: 'xml' } }), /log\.format/);
  });

  test('what a process prints: JSON through a pipe, pino-pretty lines when asked', { timeout: 30_000 }, async () => {
    const json = JSON.parse(await logLine({}));
    assert.equal(json.msg, 'hello');
    assert.equal(json.room, 'r1');
    const pretty = await logLine({ format: 'pretty' });
    assert.match(pretty, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: hello\n\s+room: "r1"$/);
  });
});
