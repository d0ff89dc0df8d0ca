import { readFile } from 'node:fs/promises';
import { extname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync } from 'fastify';
import type { Config } from '../core/config.js';
import { AppError, sendError } from '../core/errors.js';

/** The repository's client/ directory: SDK and playground sources. */
export const CLIENT_DIR = fileURLToPath(new URL('../../client/', import.meta.url));
const OUT_DIR = join(CLIENT_DIR, 'dist');

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** Built files by path relative to client/dist: sdk/mediasoup-signal.mjs, sdk/mediasoup-signal.js, playground/app.js, … */
export type ClientBuild = Map<string, Uint8Array>;

/**
 * Bundles the browser SDK (ESM and a single classic script exposing
 * `window.MediasoupSignal`) and the playground with esbuild, in memory.
 * The playground imports the SDK from /sdk/mediasoup-signal.mjs, as an app would.
 */
export async function buildClient(options: { minify?: boolean } = {}): Promise<ClientBuild> {
  const esbuild = await import('esbuild');
  const common: import('esbuild').BuildOptions & { write: false } = {
    absWorkingDir: CLIENT_DIR,
    bundle: true,
    write: false,
    platform: 'browser',
    target: ['chrome100', 'firefox100', 'safari15'],
    sourcemap: 'linked',
    minify: options.minify ?? true,
    legalComments: 'none',
    logLevel: 'silent',
    define: { 'process.env.NODE_ENV': '"production"' },
  };
  const sdkEntry = { 'mediasoup-signal': join(CLIENT_DIR, 'src/sdk/index.ts') };
  const sdkAsModule: import('esbuild').Plugin = {
    name: 'sdk-as-module',
    setup(build) {
      build.onResolve({ filter: /\/sdk\/index\.js$/ }, () => ({ path: '/sdk/mediasoup-signal.mjs', external: true }));
    },
  };
  const results = await Promise.all([
    esbuild.build({ ...common, entryPoints: sdkEntry, format: 'esm', outdir: join(OUT_DIR, 'sdk'), outExtension: { '.js': '.mjs' } }),
    esbuild.build({ ...common, entryPoints: sdkEntry, format: 'iife', globalName: 'MediasoupSignal', outdir: join(OUT_DIR, 'sdk') }),
    esbuild.build({
      ...common,
      entryPoints: { app: join(CLIENT_DIR, 'src/playground/app.ts') },
      format: 'esm',
      outdir: join(OUT_DIR, 'playground'),
      plugins: [sdkAsModule],
    }),
  ]);
  const files: ClientBuild = new Map();
  for (const result of results) for (const file of result.outputFiles ?? []) files.set(relative(OUT_DIR, file.path), file.contents);
  for (const name of ['index.html', 'style.css']) {
    files.set(`playground/${name}`, await readFile(join(CLIENT_DIR, 'src/playground', name)));
  }
  return files;
}

let cached: Promise<ClientBuild> | undefined;

/** The build, made once per process (a failed build is retried at the next request). */
export function clientBuild(): Promise<ClientBuild> {
  cached ??= buildClient().catch((err: unknown) => {
    cached = undefined;
    throw err;
  });
  return cached;
}

/**
 * Serves the SDK bundles at /sdk/* and, with `nuve.devEndpoints`, the
 * playground at / (its rooms and tokens come from the dev endpoints).
 */
export const staticRoutes: FastifyPluginAsync<{ config: Config }> = async (app, { config }) => {
  const playground = config.nuve.devEndpoints;
  // Build now rather than at the first page load.
  if (playground) clientBuild().catch((err: unknown) => app.log.error({ err }, 'building the browser SDK and playground failed'));

  const serve = async (path: string, reply: import('fastify').FastifyReply) => {
    let files: ClientBuild;
    try {
      files = await clientBuild();
    } catch (err) {
      app.log.error({ err }, 'building the browser SDK failed');
      return sendError(reply, new AppError('CLIENT_BUILD_FAILED', `the browser SDK could not be built: ${(err as Error).message}`));
    }
    const body = files.get(path);
    if (!body) return sendError(reply, new AppError('NOT_FOUND'));
    return reply
      .type(TYPES[extname(path)] ?? 'application/octet-stream')
      .header('cache-control', 'no-cache')
      .send(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
  };

  const file = { schema: { hide: true } };
  app.get<{ Params: { file: string } }>('/sdk/:file', file, (request, reply) => serve(`sdk/${request.params.file}`, reply));
  if (!playground) return;
  app.get('/', file, (_request, reply) => serve('playground/index.html', reply));
  app.get<{ Params: { file: string } }>('/playground/:file', file, (request, reply) => serve(`playground/${request.params.file}`, reply));
};
