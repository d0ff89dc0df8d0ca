// Writes the browser SDK and the playground to client/dist/ (the server builds the same in memory):
//   node --import tsx client/build.ts
//   → client/dist/sdk/mediasoup-signal.mjs   ES module:   import { RoomClient } from './mediasoup-signal.mjs'
//   → client/dist/sdk/mediasoup-signal.js    one script:  <script src="mediasoup-signal.js"> → window.MediasoupSignal
//   → client/dist/playground/…               the playground page (expects the SDK at /sdk/)
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CLIENT_DIR, buildClient } from '../src/nuve/static.js';

const files = await buildClient({ minify: !process.argv.includes('--no-minify') });
for (const [path, contents] of files) {
  const out = join(CLIENT_DIR, 'dist', path);
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, contents);
  console.log(`${out}  ${(contents.byteLength / 1024).toFixed(1)} KiB`);
}
