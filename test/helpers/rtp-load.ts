import { Worker } from 'node:worker_threads';

/**
 * Audio load for large rooms without ffmpeg: an Opus-sized RTP sender (172-byte packets, 50 a
 * second) and sinks counting RTP packets per SSRC. Each runs on its own thread, so neither the
 * embedded platform's event loop nor a burst of a few thousand packets every 20 ms (one per
 * listener) delays the other: one Node socket drops packets past ~100k packets/s, so the sinks
 * spread the listeners over several threads and sockets, each socket with a 4 MiB receive buffer
 * (Linux caps it at net.core.rmem_max).
 */
const THREAD_CODE = `
const { parentPort, workerData } = require('node:worker_threads');
const dgram = require('node:dgram');
if (workerData.role === 'sink') {
  // Per SSRC since the last reset: packets received, and the first and highest extended sequence
  // numbers (RFC 3550's expected = highest - first + 1), so loss needs no clock shared with the sender.
  let streams = new Map();
  const sockets = [];
  let bound = 0;
  for (let i = 0; i < workerData.sockets; i++) {
    const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 });
    socket.on('message', (msg) => {
      // RTCP (payload types 200-204 sit where RTP's marker+PT byte is) is not counted.
      const second = msg[1];
      if (msg.length < 12 || (second >= 192 && second <= 223)) return;
      const ssrc = msg.readUInt32BE(8);
      const seq = msg.readUInt16BE(2);
      const s = streams.get(ssrc);
      if (!s) return void streams.set(ssrc, { first: seq, highest: seq, received: 1 });
      let ext = (s.highest - (s.highest & 0xffff)) + seq;
      if (ext < s.highest - 32768) ext += 65536;
      else if (ext > s.highest + 32768) ext -= 65536;
      if (ext > s.highest) s.highest = ext;
      if (ext < s.first) s.first = ext;
      s.received++;
    });
    socket.bind(0, '127.0.0.1', () => {
      if (++bound === workerData.sockets) parentPort.postMessage({ ports: sockets.map((s) => s.address().port) });
    });
    sockets.push(socket);
  }
  parentPort.on('message', (m) => {
    if (m === 'reset') {
      streams = new Map();
      parentPort.postMessage({ reset: true });
    }
    if (m === 'streams') parentPort.postMessage({ streams: [...streams].map(([ssrc, s]) => [ssrc, s.received, s.highest - s.first + 1]) });
    if (m === 'close') for (const s of sockets) s.close(() => undefined);
  });
} else {
  const socket = dgram.createSocket('udp4');
  const { ip, port, ssrc, payloadType, payloadBytes, pps } = workerData;
  let seq = 0;
  let sent = 0;
  let timer;
  const start = Date.now();
  const tick = () => {
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
    if (m === 'close') {
      clearInterval(timer);
      socket.close(() => undefined);
    }
  });
}
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
  close(): Promise<void>;
}

/** Opus-sized RTP (12-byte header + 160 bytes, the size of 20 ms at 64 kbit/s) to `ip:port`, `pps` packets a second. */
export async function startRtpSender(o: { ip: string; port: number; ssrc: number; payloadType: number; pps?: number }): Promise<RtpSender> {
  const worker = thread({ role: 'sender', payloadBytes: 160, pps: 50, ...o });
  await reply(worker, 'ready');
  return {
    sent: () => reply<number>(worker, 'sent', 'sent'),
    async close() {
      worker.postMessage('close');
      await worker.terminate();
    },
  };
}

export interface RtpSinks {
  /** Where listeners send: every socket of every thread (assign listeners round-robin). */
  ports: number[];
  /** Starts a measurement: every stream's counts restart. */
  reset(): Promise<void>;
  /** By SSRC since the reset: RTP packets received, and expected (highest − first sequence number + 1). */
  streams(): Promise<Map<number, { received: number; expected: number }>>;
  close(): Promise<void>;
}

export async function startRtpSinks(threads: number, socketsPerThread: number): Promise<RtpSinks> {
  const workers = Array.from({ length: threads }, () => thread({ role: 'sink', sockets: socketsPerThread }));
  const ports = (await Promise.all(workers.map((w) => reply<number[]>(w, 'ports')))).flat();
  return {
    ports,
    async reset() {
      await Promise.all(workers.map((w) => reply(w, 'reset', 'reset')));
    },
    async streams() {
      const all = new Map<number, { received: number; expected: number }>();
      for (const part of await Promise.all(workers.map((w) => reply<[number, number, number][]>(w, 'streams', 'streams')))) {
        for (const [ssrc, received, expected] of part) all.set(ssrc, { received, expected });
      }
      return all;
    },
    async close() {
      for (const w of workers) w.postMessage('close');
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}
