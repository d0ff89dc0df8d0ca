import type { ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { audioRtpParameters, startFfmpegRtp, videoRtpParameters } from './ffmpeg.js';

/** JSON over HTTP to a gateway's broadcaster API; rejects with `status` and `body` on non-2xx. */
export async function gatewayCall(base: string, method: string, path: string, body?: unknown, secret?: string): Promise<any> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...(secret ? { authorization: `Bearer ${secret}` } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await res.json();
  if (!res.ok) throw Object.assign(new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`), { status: res.status, body: json });
  return json;
}

/**
 * A broadcaster sending one audio track into its token's room over plain RTP (comedia: it sends first, the
 * transport learns its address): the broadcaster (`id`, `secret`), its input transport (`ip`, `port`, `rtcpPort`)
 * and its producer.
 */
export async function openAudioBroadcaster(
  base: string,
  token: string,
  options: { rtcpMux?: boolean; displayName?: string } = {},
): Promise<{ source: any; input: any; producer: any }> {
  const source = await gatewayCall(base, 'POST', '/broadcasters', { token, ...(options.displayName !== undefined && { displayName: options.displayName }) });
  const input = await gatewayCall(base, 'POST', `/broadcasters/${source.id}/transports`, { comedia: true, rtcpMux: options.rtcpMux ?? true }, source.secret);
  const producer = await gatewayCall(base, 'POST', `/broadcasters/${source.id}/transports/${input.id}/producers`, { kind: 'audio', rtpParameters: audioRtpParameters }, source.secret);
  return { source, input, producer };
}

export interface Broadcast {
  id: string;
  secret: string;
  producerIds: { audio: string; video: string };
  ffmpeg: ChildProcess;
  stop(): Promise<void>;
}

/** ffmpeg's Opus + VP8 RTP entering a room as a broadcaster (two PlainTransports, comedia). */
export async function startBroadcast(base: string, token: string): Promise<Broadcast> {
  const bc = await gatewayCall(base, 'POST', '/broadcasters', { token, displayName: 'ffmpeg' });
  const audioIn = await gatewayCall(base, 'POST', `/broadcasters/${bc.id}/transports`, { comedia: true, rtcpMux: false }, bc.secret);
  const videoIn = await gatewayCall(base, 'POST', `/broadcasters/${bc.id}/transports`, { comedia: true, rtcpMux: false }, bc.secret);
  const audio = await gatewayCall(base, 'POST', `/broadcasters/${bc.id}/transports/${audioIn.id}/producers`, { kind: 'audio', rtpParameters: audioRtpParameters }, bc.secret);
  const video = await gatewayCall(base, 'POST', `/broadcasters/${bc.id}/transports/${videoIn.id}/producers`, { kind: 'video', rtpParameters: videoRtpParameters }, bc.secret);
  const ffmpeg = startFfmpegRtp({
    ip: audioIn.ip,
    audioPort: audioIn.port,
    audioRtcpPort: audioIn.rtcpPort,
    videoPort: videoIn.port,
    videoRtcpPort: videoIn.rtcpPort,
  });
  return {
    id: bc.id,
    secret: bc.secret,
    producerIds: { audio: audio.id, video: video.id },
    ffmpeg,
    async stop() {
      ffmpeg.kill('SIGKILL');
      await gatewayCall(base, 'DELETE', `/broadcasters/${bc.id}`, undefined, bc.secret).catch(() => undefined);
    },
  };
}

export interface Egress {
  id: string;
  secret: string;
  consumers: { id: string; kind: string; sink: Socket; packetsReceived(): number }[];
  /** outbound-rtp packet/byte counts of each consumer, as mediasoup reports them. */
  stats(): Promise<{ packets: number; bytes: number }[]>;
  stop(): Promise<void>;
}

/** A second peer consuming producers over plain RTP into local UDP sockets (recording-style egress). */
export async function startEgress(base: string, token: string, producerIds: string[]): Promise<Egress> {
  const bc = await gatewayCall(base, 'POST', '/broadcasters', { token, displayName: 'recorder' });
  const consumers: Egress['consumers'] = [];
  for (const producerId of producerIds) {
    const sink = createSocket('udp4');
    let received = 0;
    sink.on('message', () => received++);
    await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
    const out = await gatewayCall(base, 'POST', `/broadcasters/${bc.id}/transports`, { comedia: false, rtcpMux: true }, bc.secret);
    await gatewayCall(base, 'POST', `/broadcasters/${bc.id}/transports/${out.id}/connect`, { ip: '127.0.0.1', port: sink.address().port }, bc.secret);
    const consumer = await gatewayCall(base, 'POST', `/broadcasters/${bc.id}/transports/${out.id}/consume`, { producerId }, bc.secret);
    consumers.push({ id: consumer.id, kind: consumer.kind, sink, packetsReceived: () => received });
  }
  return {
    id: bc.id,
    secret: bc.secret,
    consumers,
    stats: () =>
      Promise.all(
        consumers.map(async (c) => {
          const stats: any[] = await gatewayCall(base, 'GET', `/broadcasters/${bc.id}/consumers/${c.id}/stats`, undefined, bc.secret);
          const outbound = stats.find((s) => s.type === 'outbound-rtp');
          return { packets: outbound?.packetCount ?? 0, bytes: outbound?.byteCount ?? 0 };
        }),
      ),
    async stop() {
      for (const c of consumers) c.sink.close();
      await gatewayCall(base, 'DELETE', `/broadcasters/${bc.id}`, undefined, bc.secret).catch(() => undefined);
    },
  };
}
