// `npm start` as a person runs it in a terminal: under a pseudo-terminal (script(1)),
// wait for the banner, check that Nuve, the playground and the gateway answer,
// then press Ctrl-C and check that it stops by itself. Prints what it saw.
//   node start-check.mjs   (in the checkout)
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const START_TIMEOUT_MS = 240_000;
const STOP_TIMEOUT_MS = 60_000;
const strip = (s) => s.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').replace(/\r/g, '');

const t0 = Date.now();
const child = spawn('script', ['-qfec', 'npm start', '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
let out = '';
child.stdout.on('data', (d) => (out += d));
child.stderr.on('data', (d) => (out += d));
const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
const results = [];
const check = (ok, what) => {
  results.push(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  return ok;
};

let failed = false;
try {
  while (!strip(out).includes('mediasoup-signal started')) {
    if (child.exitCode !== null) throw new Error('npm start exited before its banner');
    if (Date.now() - t0 > START_TIMEOUT_MS) throw new Error(`no banner within ${START_TIMEOUT_MS / 1000} s`);
    await sleep(200);
  }
  await sleep(1000);
  check(true, `banner after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const text = strip(out);
  const nuve = /Nuve API:\s+(http:\/\/\S+)/.exec(text)?.[1];
  const gateway = /Gateway:\s+ws:\/\/([^:\s]+):(\d+)/.exec(text);
  if (!check(!!nuve, `Nuve URL in the banner (${nuve})`)) throw new Error('no Nuve URL');
  for (const path of ['/health', '/', '/openapi.json', '/sdk/mediasoup-signal.mjs']) {
    const res = await fetch(nuve + path, { signal: AbortSignal.timeout(60_000) }).catch((err) => ({ ok: false, status: String(err) }));
    if (!check(res.ok, `GET ${nuve}${path} -> ${res.status}`)) failed = true;
  }
  if (gateway) {
    const [, host, port] = gateway;
    const opened = await new Promise((resolve) => {
      const s = connect(Number(port), host);
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (!check(opened, `gateway accepts TCP on ${host}:${port}`)) failed = true;
  } else {
    failed = true;
    check(false, 'gateway URL in the banner');
  }
  const logLines = text.split('\n').filter((l) => /^\[\d\d:\d\d:\d\d\.\d{3}\] [A-Z]+/.test(l));
  const jsonLines = text.split('\n').filter((l) => l.startsWith('{"level"'));
  if (!check(logLines.length > 0 && jsonLines.length === 0, `readable log lines on a terminal (${logLines.length} pretty, ${jsonLines.length} JSON)`)) failed = true;
} catch (err) {
  failed = true;
  check(false, String(err));
}

// Ctrl-C, as typed into the terminal: the line discipline sends SIGINT to npm and node.
const stopAt = Date.now();
child.stdin.write('\x03');
const stop = await Promise.race([exited, sleep(STOP_TIMEOUT_MS).then(() => undefined)]);
if (stop) {
  check(true, `stopped ${((Date.now() - stopAt) / 1000).toFixed(1)} s after Ctrl-C (exit ${stop.code ?? stop.signal})`);
  // The platform itself (node under npm) is gone too, not only npm: its ports close.
  const nuvePort = Number(/Nuve API:\s+http:\/\/[^:\s]+:(\d+)/.exec(strip(out))?.[1] ?? 0);
  let open = nuvePort > 0;
  for (let i = 0; i < 100 && open; i++) {
    open = await new Promise((resolve) => {
      const s = connect(nuvePort, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (open) await sleep(100);
  }
  if (!check(nuvePort > 0 && !open, `port ${nuvePort} closed after the stop (no process left behind)`)) failed = true;
} else {
  failed = true;
  check(false, `still running ${STOP_TIMEOUT_MS / 1000} s after Ctrl-C; killing it`);
  child.kill('SIGKILL');
}
console.log('--- npm start output (terminal) ---');
console.log(strip(out).trimEnd().split('\n').slice(0, 40).join('\n'));
console.log('--- checks ---');
console.log(results.join('\n'));
process.exit(failed ? 1 : 0);
