import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

/**
 * Audio load for large rooms without ffmpeg: an Opus-sized RTP sender (172-byte packets, 50 a
 * second) on its own thread, so the embedded platform's event loop never delays it, and a sink
 * counting RTP packets per SSRC in a small native process (below).
 */
const THREAD_CODE = `
const { parentPort, workerData } = require('node:worker_threads');
const dgram = require('node:dgram');
  const socket = dgram.createSocket('udp4');
  const { ip, port, ssrc, payloadType, payloadBytes, pps } = workerData;
  let seq = 0;
  let sent = 0;
  let timer;
  let paused = false;
  let start = Date.now();
  const tick = () => {
    if (paused) return;
    // Paced against the clock: a late timer sends the packets it owes, as a real 20 ms encoder would.
    const due = Math.floor(((Date.now() - start) * pps) / 1000);
    while (sent < due) {
      const packet = Buffer.alloc(12 + payloadBytes, 0x55);
      packet[0] = 0x80;
      packet[1] = payloadType & 0x7f;
      packet.writeUInt16BE(seq, 2);
      packet.writeUInt32BE((sent * (48000 / pps)) >>> 0, 4);
      packet.writeUInt32BE(ssrc, 8);
      socket.send(packet, port, ip);
      seq = (seq + 1) & 0xffff;
      sent++;
    }
  };
  socket.bind(0, '127.0.0.1', () => {
    timer = setInterval(tick, 1000 / pps / 2);
    parentPort.postMessage({ ready: true });
  });
  parentPort.on('message', (m) => {
    if (m === 'sent') parentPort.postMessage({ sent });
    if (m === 'pause') {
      paused = true;
      parentPort.postMessage({ paused: true });
    }
    if (m === 'resume') {
      // The pause owes nothing: pacing goes on from now, with the stream's sequence numbers and timestamps.
      start = Date.now() - (sent * 1000) / pps;
      paused = false;
      parentPort.postMessage({ paused: false });
    }
    if (m === 'close') {
      clearInterval(timer);
      socket.close(() => undefined);
    }
  });

`;

function thread(workerData: Record<string, unknown>): Worker {
  return new Worker(THREAD_CODE, { eval: true, workerData });
}

/** The next message from `worker` carrying `key`. */
function reply<T>(worker: Worker, key: string, ask?: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: Record<string, unknown>) => {
      if (!(key in m)) return;
      worker.off('message', onMessage);
      worker.off('error', reject);
      resolve(m[key] as T);
    };
    worker.on('message', onMessage);
    worker.once('error', reject);
    if (ask) worker.postMessage(ask);
  });
}

export interface RtpSender {
  /** Packets sent so far. */
  sent(): Promise<number>;
  /** Stops sending (resolves once the sender thread has stopped); `resume` goes on with the same stream. */
  pause(): Promise<void>;
  resume(): Promise<void>;
  close(): Promise<void>;
}

/** Opus-sized RTP (12-byte header + 160 bytes, the size of 20 ms at 64 kbit/s) to `ip:port`, `pps` packets a second. */
export async function startRtpSender(o: { ip: string; port: number; ssrc: number; payloadType: number; pps?: number }): Promise<RtpSender> {
  const worker = thread({ payloadBytes: 160, pps: 50, ...o });
  await reply(worker, 'ready');
  return {
    sent: () => reply<number>(worker, 'sent', 'sent'),
    pause: () => reply<boolean>(worker, 'paused', 'pause').then(() => undefined),
    resume: () => reply<boolean>(worker, 'paused', 'resume').then(() => undefined),
    async close() {
      worker.postMessage('close');
      await worker.terminate();
    },
  };
}

export interface RtpSink {
  /** Where listeners send: every one of its sockets (assign listeners round-robin). */
  ports: number[];
  /** Starts a measurement: every stream's counts restart. */
  reset(): Promise<void>;
  /** By SSRC since the reset: RTP packets received, and expected (highest − first sequence number + 1). */
  streams(): Promise<Map<number, { received: number; expected: number }>>;
  close(): Promise<void>;
}

/**
 * The sink: one process of test/helpers/rtp-sink.c (compiled on first use, cached by its source's
 * digest) with `sockets` UDP sockets. It takes packets in batches (recvmmsg), where
 * Node sockets dropped them past ~100k packets/s on this 2-core machine: the sink, not the SFU,
 * was then what a room of 3,000 listeners measured.
 */
export async function startRtpSink(sockets: number): Promise<RtpSink> {
  const child = spawn(sinkBinary(), [String(sockets)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const waiting: ((line: string) => void)[] = [];
  lines.on('line', (line) => waiting.shift()?.(line));
  const next = (ask?: string) =>
    new Promise<string>((resolve, reject) => {
      // Removed with its answer: a bench asks many times, and every exit listener would stay otherwise.
      const onExit = (code: number | null) => reject(new Error(`rtp-sink exited (${code})`));
      child.once('exit', onExit);
      waiting.push((line) => {
        child.off('exit', onExit);
        resolve(line);
      });
      if (ask) child.stdin!.write(`${ask}\n`);
    });
  const ports = JSON.parse(await next()) as number[];
  return {
    ports,
    async reset() {
      await next('reset');
    },
    async streams() {
      const all = new Map<number, { received: number; expected: number }>();
      for (const [ssrc, received, expected] of JSON.parse(await next('streams')) as [number, number, number][]) all.set(ssrc, { received, expected });
      return all;
    },
    async close() {
      child.stdin!.end();
      if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

function sinkBinary(): string {
  const source = fileURLToPath(new URL('./rtp-sink.c', import.meta.url));
  const digest = createHash('sha256').update(readFileSync(source)).digest('hex').slice(0, 16);
  const binary = join(tmpdir(), `mss-rtp-sink-${digest}`);
  if (!existsSync(binary)) {
    const built = spawnSync('cc', ['-O2', '-o', `${binary}.${process.pid}`, source], { stdio: 'inherit' });
    if (built.status !== 0) throw new Error('could not compile test/helpers/rtp-sink.c (cc)');
    renameSync(`${binary}.${process.pid}`, binary);
  }
  return binary;
}
