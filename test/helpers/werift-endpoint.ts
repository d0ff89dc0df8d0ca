/**
 * Browser-free WebRTC endpoint for tests: one werift RTCPeerConnection per mediasoup WebRtcTransport.
 *
 * It knows nothing about our signaling. It only needs what mediasoup gives a client
 * (transport id, iceParameters, iceCandidates, dtlsParameters, consumer rtpParameters) and returns
 * what mediasoup needs from a client (dtlsParameters for transport.connect, rtpParameters for
 * transport.produce, rtpCapabilities for router.canConsume / transport.consume).
 *
 * Roles: mediasoup is ICE-lite and DTLS server; werift is ICE controlling and DTLS client.
 * SDP: the remote description given to werift is built here from mediasoup's parameters.
 *  - send side: werift offers (sendonly m-lines), we answer as mediasoup (recvonly).
 *  - recv side: we offer as mediasoup (sendonly m-lines with the consumer SSRCs), werift answers.
 *    Every consume() renegotiates with a new offer containing all m-lines so far (peers may join later).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import {
  RTCDtlsTransport,
  RTCPeerConnection,
  RTCRtpCodecParameters,
  RtpPacket,
  SessionDescription,
  type RTCCertificate,
  useFIR,
  useNACK,
  usePLI,
  useSdesMid,
  type MediaStreamTrack,
  type RTCRtpTransceiver,
} from 'werift';
import type { types as ms } from 'mediasoup';

export type MediaKind = 'audio' | 'video';

/** What the server tells a client about its mediasoup WebRtcTransport. */
export interface RemoteTransportParams {
  id: string;
  iceParameters: ms.IceParameters;
  iceCandidates: ms.IceCandidate[];
  dtlsParameters: ms.DtlsParameters;
}

const MID_URI = 'urn:ietf:params:rtp-hdrext:sdes:mid' as const;

/**
 * RTP capabilities of the werift endpoint in mediasoup's shape (same for sending and receiving).
 * No RTX (werift needs matching apt payload types for it), no transport-cc / abs-send-time.
 */
export const weriftRtpCapabilities: ms.RtpCapabilities = {
  codecs: [
    {
      kind: 'audio',
      mimeType: 'audio/opus',
      preferredPayloadType: 100,
      clockRate: 48000,
      channels: 2,
      parameters: {},
      rtcpFeedback: [],
    },
    {
      kind: 'video',
      mimeType: 'video/VP8',
      preferredPayloadType: 101,
      clockRate: 90000,
      parameters: {},
      rtcpFeedback: [
        { type: 'nack' },
        { type: 'nack', parameter: 'pli' },
        { type: 'ccm', parameter: 'fir' },
      ],
    },
  ],
  headerExtensions: [
    { kind: 'audio', uri: MID_URI, preferredId: 1, preferredEncrypt: false, direction: 'sendrecv' },
    { kind: 'video', uri: MID_URI, preferredId: 1, preferredEncrypt: false, direction: 'sendrecv' },
  ],
};
export const recvRtpCapabilities: ms.RtpCapabilities = weriftRtpCapabilities;
export const sendRtpCapabilities: ms.RtpCapabilities = weriftRtpCapabilities;

/** A werift peer's ICE on one IPv4 address (`hostAddress`: loopback unless the agent is elsewhere), bundled, no STUN. */
export function hostOnlyIce(certificate: RTCCertificate, hostAddress: string): NonNullable<ConstructorParameters<typeof RTCPeerConnection>[0]> {
  return {
    certificates: [certificate],
    bundlePolicy: 'max-bundle',
    iceServers: [],
    iceUseIpv6: false,
    iceInterfaceAddresses: { udp4: hostAddress },
    iceAdditionalHostAddresses: [hostAddress],
  };
}

function makePeerConnection(certificate: RTCCertificate, hostAddress: string): RTCPeerConnection {
  return new RTCPeerConnection({
    ...hostOnlyIce(certificate, hostAddress),
    codecs: {
      audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2 })],
      video: [
        new RTCRtpCodecParameters({
          mimeType: 'video/VP8',
          clockRate: 90000,
          rtcpFeedback: [useNACK(), usePLI(), useFIR()],
        }),
      ],
    },
    headerExtensions: { audio: [useSdesMid()], video: [useSdesMid()] },
  });
}

function fmtpString(parameters: Record<string, unknown> | undefined): string {
  return Object.entries(parameters ?? {})
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(';');
}

function parseFmtp(s: string | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const part of (s ?? '').split(';')) {
    const [k, v] = part.split('=');
    if (!k || v === undefined) continue;
    out[k.trim()] = /^\d+$/.test(v.trim()) ? Number(v.trim()) : v.trim();
  }
  return out;
}

/** ICE + DTLS lines of one m-section, as mediasoup (ICE-lite, DTLS server) would write them. */
function transportLines(remote: RemoteTransportParams, setup: 'actpass' | 'passive'): string[] {
  const lines = [
    `a=ice-ufrag:${remote.iceParameters.usernameFragment}`,
    `a=ice-pwd:${remote.iceParameters.password}`,
    'a=ice-options:renomination',
  ];
  for (const fp of remote.dtlsParameters.fingerprints) {
    lines.push(`a=fingerprint:${fp.algorithm} ${fp.value}`);
  }
  lines.push(`a=setup:${setup}`);
  for (const c of remote.iceCandidates) {
    if (c.protocol !== 'udp') continue; // werift runs without ICE-TCP here
    const address = c.address ?? c.ip;
    lines.push(`a=candidate:${c.foundation} 1 udp ${c.priority} ${address} ${c.port} typ host`);
  }
  lines.push('a=end-of-candidates');
  return lines;
}

function sessionLines(version: number, mids: string[]): string[] {
  return [
    'v=0',
    `o=mediasoup-server 1000000 ${version} IN IP4 0.0.0.0`,
    's=-',
    't=0 0',
    'a=ice-lite',
    `a=group:BUNDLE ${mids.join(' ')}`,
    'a=msid-semantic: WMS *',
  ];
}

function mLine(kind: MediaKind, port: number, pts: number[]): string[] {
  return [`m=${kind} ${port} UDP/TLS/RTP/SAVPF ${pts.join(' ')}`, 'c=IN IP4 127.0.0.1'];
}

function codecLines(codec: {
  payloadType: number;
  mimeType: string;
  clockRate: number;
  channels?: number;
  fmtp: string;
  rtcpFeedback: { type: string; parameter?: string }[];
}): string[] {
  const name = codec.mimeType.split('/')[1] ?? codec.mimeType;
  const ch = codec.channels && codec.channels > 1 ? `/${codec.channels}` : '';
  const lines = [`a=rtpmap:${codec.payloadType} ${name}/${codec.clockRate}${ch}`];
  if (codec.fmtp) lines.push(`a=fmtp:${codec.payloadType} ${codec.fmtp}`);
  for (const fb of codec.rtcpFeedback) {
    lines.push(`a=rtcp-fb:${codec.payloadType} ${fb.type}${fb.parameter ? ` ${fb.parameter}` : ''}`);
  }
  return lines;
}

/** Serializes async work (negotiations) on one peer connection. */
class Queue {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.tail.then(fn, fn);
    this.tail = p.catch(() => undefined);
    return p;
  }
}

abstract class WeriftTransportBase {
  /** DTLS parameters to pass to mediasoup `transport.connect({ dtlsParameters })` (werift is DTLS client). */
  readonly dtlsParameters: ms.DtlsParameters;
  protected readonly queue = new Queue();
  protected sdpVersion = 0;
  protected closed = false;

  protected constructor(
    readonly remote: RemoteTransportParams,
    readonly pc: RTCPeerConnection,
    fingerprints: ms.DtlsFingerprint[],
  ) {
    this.dtlsParameters = { role: 'client', fingerprints };
  }

  get id(): string {
    return this.remote.id;
  }

  get connectionState(): RTCPeerConnection['connectionState'] {
    return this.pc.connectionState;
  }

  /** Resolves once ICE + DTLS are up (needs a negotiation and mediasoup transport.connect()). */
  async waitForConnected(timeoutMs = 10_000): Promise<void> {
    if (this.pc.connectionState === 'connected') return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        sub.unSubscribe();
        reject(new Error(`werift transport ${this.id}: not connected after ${timeoutMs} ms (${this.pc.connectionState})`));
      }, timeoutMs);
      const sub = this.pc.connectionStateChange.subscribe((state) => {
        if (state === 'connected') {
          clearTimeout(timer);
          sub.unSubscribe();
          resolve();
        } else if (state === 'failed' || state === 'closed') {
          clearTimeout(timer);
          sub.unSubscribe();
          reject(new Error(`werift transport ${this.id}: connection ${state}`));
        }
      });
    });
  }

  protected static async setup(hostAddress: string): Promise<{ pc: RTCPeerConnection; fingerprints: ms.DtlsFingerprint[] }> {
    // Create the certificate up front so the fingerprint is known before any negotiation.
    const certificate = await RTCDtlsTransport.SetupCertificate();
    const pc = makePeerConnection(certificate, hostAddress);
    const fingerprints = certificate.getFingerprints().map((f) => ({
      algorithm: f.algorithm as ms.FingerprintAlgorithm,
      value: f.value,
    }));
    return { pc, fingerprints };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pc.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Send side
// ---------------------------------------------------------------------------------------------

export interface ProduceOptions {
  kind: MediaKind;
  /** Codec to send; default audio/opus or video/VP8. */
  mimeType?: string;
}

export class WeriftProducer {
  /** Packets/bytes handed to werift for sending (before DTLS is up werift drops them). */
  packetsSent = 0;
  bytesSent = 0;
  private readonly sources = new Set<FfmpegSource>();

  constructor(
    readonly kind: MediaKind,
    readonly transceiver: RTCRtpTransceiver,
    /** Give these to mediasoup `transport.produce({ kind, rtpParameters })`. */
    readonly rtpParameters: ms.RtpParameters,
  ) {}

  get mid(): string {
    return this.rtpParameters.mid ?? '';
  }

  get ssrc(): number {
    return this.transceiver.sender.ssrc;
  }

  /** Sends one RTP packet; werift rewrites SSRC and payload type to the negotiated ones. */
  async sendRtp(packet: Buffer | RtpPacket): Promise<void> {
    const size = Buffer.isBuffer(packet) ? packet.length : packet.serializeSize;
    if (this.transceiver.sender.dtlsTransport?.state === 'connected') {
      this.packetsSent++;
      this.bytesSent += size;
    }
    await this.transceiver.sender.sendRtp(packet);
  }

  /**
   * Runs ffmpeg with a test source (audio: lavfi sine -> opus; video: lavfi testsrc -> VP8, keyframe
   * every second) sending RTP to a local UDP port, and forwards every RTP packet into this producer.
   */
  async startFfmpegSource(options: FfmpegSourceOptions = {}): Promise<FfmpegSource> {
    const source = await FfmpegSource.start(this.kind, (buf) => void this.sendRtp(buf).catch(() => undefined), options);
    this.sources.add(source);
    return source;
  }

  /** Stops the ffmpeg sources feeding this producer (the mediasoup producer is the caller's to close). */
  async close(): Promise<void> {
    await Promise.all([...this.sources].map((s) => s.stop()));
    this.sources.clear();
  }
}

export class WeriftSendTransport extends WeriftTransportBase {
  private readonly producers: WeriftProducer[] = [];
  private readonly chosenPt = new Map<string, number>(); // mid -> payload type answered

  static async create(params: RemoteTransportParams, hostAddress = '127.0.0.1'): Promise<WeriftSendTransport> {
    const { pc, fingerprints } = await WeriftTransportBase.setup(hostAddress);
    return new WeriftSendTransport(params, pc, fingerprints);
  }

  /** Adds a sendonly transceiver, renegotiates, and returns the producer with its mediasoup rtpParameters. */
  produce(options: ProduceOptions): Promise<WeriftProducer> {
    return this.queue.run(async () => {
      if (this.closed) throw new Error('WeriftSendTransport closed');
      const wanted = (options.mimeType ?? (options.kind === 'audio' ? 'audio/opus' : 'video/VP8')).toLowerCase();
      const transceiver = this.pc.addTransceiver(options.kind, { direction: 'sendonly' });
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      const local = SessionDescription.parse(this.pc.localDescription!.sdp);
      const media = local.media.find((m) => m.rtp.muxId === transceiver.mid);
      if (!media || !transceiver.mid) throw new Error('werift offer has no m-section for the new transceiver');
      const codec = media.rtp.codecs.find((c) => c.mimeType.toLowerCase() === wanted);
      if (!codec) throw new Error(`werift does not offer ${wanted}`);
      this.chosenPt.set(transceiver.mid, codec.payloadType);

      await this.pc.setRemoteDescription({ type: 'answer', sdp: this.buildAnswer(local) });

      const midExt = media.rtp.headerExtensions.find((e) => e.uri === MID_URI);
      const cname = media.ssrc[0]?.cname ?? this.pc.cname;
      const rtpParameters: ms.RtpParameters = {
        mid: transceiver.mid,
        codecs: [
          {
            mimeType: codec.mimeType,
            payloadType: codec.payloadType,
            clockRate: codec.clockRate,
            ...(codec.channels && codec.channels > 1 ? { channels: codec.channels } : {}),
            parameters: parseFmtp(codec.parameters),
            rtcpFeedback: codec.rtcpFeedback.map((fb) => ({ type: fb.type, ...(fb.parameter ? { parameter: fb.parameter } : {}) })),
          },
        ],
        headerExtensions: midExt ? [{ uri: MID_URI, id: midExt.id, encrypt: false, parameters: {} }] : [],
        encodings: [{ ssrc: transceiver.sender.ssrc }],
        rtcp: { cname, reducedSize: false },
      };
      const producer = new WeriftProducer(options.kind, transceiver, rtpParameters);
      this.producers.push(producer);
      return producer;
    });
  }

  /** mediasoup's answer to werift's current offer: one recvonly m-section per offered m-section. */
  private buildAnswer(offer: SessionDescription): string {
    const mids = offer.media.map((m) => m.rtp.muxId ?? '');
    const lines = sessionLines(++this.sdpVersion, mids);
    for (const m of offer.media) {
      const mid = m.rtp.muxId ?? '';
      const pt = this.chosenPt.get(mid);
      const codec = m.rtp.codecs.find((c) => c.payloadType === pt);
      if (!codec) {
        lines.push(...mLine(m.kind as MediaKind, 0, [Number(m.fmt[0] ?? 0)]), `a=mid:${mid}`, 'a=inactive');
        continue;
      }
      lines.push(...mLine(m.kind as MediaKind, 7, [codec.payloadType]));
      lines.push(`a=mid:${mid}`, m.direction === 'inactive' ? 'a=inactive' : 'a=recvonly', 'a=rtcp-mux');
      lines.push(...transportLines(this.remote, 'passive'));
      lines.push(
        ...codecLines({
          payloadType: codec.payloadType,
          mimeType: codec.mimeType,
          clockRate: codec.clockRate,
          channels: codec.channels,
          fmtp: codec.parameters ?? '',
          rtcpFeedback: codec.rtcpFeedback,
        }),
      );
      for (const ext of m.rtp.headerExtensions) {
        if (ext.uri === MID_URI) lines.push(`a=extmap:${ext.id} ${ext.uri}`);
      }
    }
    return lines.join('\r\n') + '\r\n';
  }

  override async close(): Promise<void> {
    await Promise.all(this.producers.map((p) => p.close()));
    await super.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Receive side
// ---------------------------------------------------------------------------------------------

/** What the server tells a client about a mediasoup Consumer. */
export interface ConsumerInfo {
  id: string;
  kind: MediaKind;
  rtpParameters: ms.RtpParameters;
  producerId?: string;
}

export class WeriftConsumer {
  /** RTP packets / bytes (header + payload) delivered by werift's track.onReceiveRtp. */
  packets = 0;
  bytes = 0;
  track: MediaStreamTrack | undefined;
  active = true;
  private waiters: { target: number; resolve: () => void; reject: (err: Error) => void }[] = [];

  constructor(
    readonly id: string,
    readonly kind: MediaKind,
    readonly mid: string,
    readonly ssrc: number,
    readonly rtpParameters: ms.RtpParameters,
  ) {}

  /** @internal */
  attach(track: MediaStreamTrack): void {
    if (this.track === track) return;
    this.track = track;
    track.onReceiveRtp.subscribe((packet) => {
      if (!this.active) return;
      this.packets++;
      this.bytes += packet.serializeSize;
      this.waiters = this.waiters.filter((w) => {
        if (this.packets >= w.target) w.resolve();
        return this.packets < w.target;
      });
    });
  }

  /** Resolves when at least `count` more packets than now have been received. */
  waitForPackets(count = 1, timeoutMs = 10_000): Promise<void> {
    const target = this.packets + count;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`consumer ${this.id} (${this.kind}): ${this.packets}/${target} packets after ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = {
        target,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (err: Error) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** @internal rejects pending waitForPackets() (transport closed) so no timer keeps the process alive. */
  dispose(): void {
    this.active = false;
    for (const w of this.waiters) w.reject(new Error(`consumer ${this.id}: transport closed`));
    this.waiters = [];
  }
}

export class WeriftRecvTransport extends WeriftTransportBase {
  /** In m-line order (m-lines are never removed, only made inactive). */
  private readonly entries: WeriftConsumer[] = [];

  static async create(params: RemoteTransportParams, hostAddress = '127.0.0.1'): Promise<WeriftRecvTransport> {
    const { pc, fingerprints } = await WeriftTransportBase.setup(hostAddress);
    return new WeriftRecvTransport(params, pc, fingerprints);
  }

  get consumers(): readonly WeriftConsumer[] {
    return this.entries;
  }

  getConsumer(id: string): WeriftConsumer | undefined {
    return this.entries.find((c) => c.id === id);
  }

  /** Adds an m-line for a mediasoup consumer (renegotiating) and starts counting its packets. */
  consume(info: ConsumerInfo): Promise<WeriftConsumer> {
    return this.queue.run(async () => {
      if (this.closed) throw new Error('WeriftRecvTransport closed');
      const ssrc = info.rtpParameters.encodings?.[0]?.ssrc;
      if (ssrc === undefined) throw new Error(`consumer ${info.id} has no encodings[0].ssrc`);
      const mid = info.rtpParameters.mid ?? `c${this.entries.length}`;
      if (this.entries.some((c) => c.mid === mid)) throw new Error(`duplicate mid ${mid}`);
      const consumer = new WeriftConsumer(info.id, info.kind, mid, ssrc, info.rtpParameters);
      this.entries.push(consumer);
      try {
        await this.negotiate();
      } catch (err) {
        this.entries.pop();
        throw err;
      }
      const transceiver = this.pc.getTransceivers().find((t) => t.mid === mid);
      const track = transceiver?.receiver.trackBySSRC[ssrc];
      if (!track) throw new Error(`werift created no track for consumer ${info.id} (mid ${mid}, ssrc ${ssrc})`);
      consumer.attach(track);
      return consumer;
    });
  }

  /** Marks the consumer's m-line inactive and renegotiates (mediasoup consumer closing is the caller's job). */
  removeConsumer(id: string): Promise<void> {
    return this.queue.run(async () => {
      const consumer = this.entries.find((c) => c.id === id);
      if (!consumer || !consumer.active || this.closed) return;
      consumer.active = false;
      await this.negotiate();
    });
  }

  override async close(): Promise<void> {
    for (const c of this.entries) c.dispose();
    await super.close();
  }

  private async negotiate(): Promise<void> {
    await this.pc.setRemoteDescription({ type: 'offer', sdp: this.buildOffer() });
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
  }

  /** mediasoup's offer: one sendonly m-section per consumer (inactive once removed). */
  private buildOffer(): string {
    const lines = sessionLines(
      ++this.sdpVersion,
      this.entries.map((c) => c.mid),
    );
    for (const c of this.entries) {
      const rp = c.rtpParameters;
      lines.push(...mLine(c.kind, 7, rp.codecs.map((codec) => codec.payloadType)));
      lines.push(`a=mid:${c.mid}`, c.active ? 'a=sendonly' : 'a=inactive', 'a=rtcp-mux', 'a=rtcp-rsize');
      lines.push(...transportLines(this.remote, 'actpass'));
      for (const codec of rp.codecs) {
        lines.push(
          ...codecLines({
            payloadType: codec.payloadType,
            mimeType: codec.mimeType,
            clockRate: codec.clockRate,
            channels: codec.channels,
            fmtp: fmtpString(codec.parameters),
            rtcpFeedback: codec.rtcpFeedback ?? [],
          }),
        );
      }
      for (const ext of rp.headerExtensions ?? []) lines.push(`a=extmap:${ext.id} ${ext.uri}`);
      if (c.active) {
        const cname = rp.rtcp?.cname ?? 'mediasoup';
        const streamId = rp.rtcp?.cname ?? 'mediasoup';
        lines.push(`a=msid:${streamId} ${c.id}`);
        const enc = rp.encodings?.[0];
        if (enc?.rtx) lines.push(`a=ssrc-group:FID ${c.ssrc} ${enc.rtx.ssrc}`);
        lines.push(`a=ssrc:${c.ssrc} cname:${cname}`, `a=ssrc:${c.ssrc} msid:${streamId} ${c.id}`);
        if (enc?.rtx) {
          lines.push(`a=ssrc:${enc.rtx.ssrc} cname:${cname}`, `a=ssrc:${enc.rtx.ssrc} msid:${streamId} ${c.id}`);
        }
      }
    }
    return lines.join('\r\n') + '\r\n';
  }
}

// ---------------------------------------------------------------------------------------------
// ffmpeg test source
// ---------------------------------------------------------------------------------------------

export interface FfmpegSourceOptions {
  /** Stop after this many seconds (default: run until stop()). */
  durationSec?: number;
  /** Path of the ffmpeg binary (default: "ffmpeg" on PATH). */
  ffmpegPath?: string;
}

/** ffmpeg sending test RTP to a local UDP socket; each RTP packet received is passed to `onRtp`. */
export class FfmpegSource {
  /** RTP packets received from ffmpeg and forwarded. */
  packets = 0;
  stderr = '';
  private stopped = false;

  private constructor(
    readonly kind: MediaKind,
    readonly port: number,
    readonly process: ChildProcess,
    private readonly socket: dgram.Socket,
  ) {}

  static async start(
    kind: MediaKind,
    onRtp: (packet: Buffer) => void,
    options: FfmpegSourceOptions = {},
  ): Promise<FfmpegSource> {
    const socket = dgram.createSocket('udp4');
    socket.bind(0, '127.0.0.1');
    await once(socket, 'listening');
    const port = socket.address().port;
    const url = `rtp://127.0.0.1:${port}?pkt_size=1200&rtcpport=${port}`;
    const input =
      kind === 'audio'
        ? ['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000']
        : ['-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=15'];
    const encode =
      kind === 'audio'
        ? ['-ac', '2', '-c:a', 'libopus', '-b:a', '48k', '-application', 'lowdelay', '-frame_duration', '20', '-payload_type', '100']
        : [
            '-pix_fmt', 'yuv420p', '-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '300k',
            '-g', '15', '-keyint_min', '15', '-auto-alt-ref', '0', '-error-resilient', '1', '-payload_type', '101',
          ];
    const args = [
      '-hide_banner', '-loglevel', 'error', '-nostdin', '-re',
      ...input,
      ...(options.durationSec ? ['-t', String(options.durationSec)] : []),
      ...encode,
      '-ssrc', String(kind === 'audio' ? 1111 : 2222),
      '-f', 'rtp', url,
    ];
    const proc = spawn(options.ffmpegPath ?? 'ffmpeg', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const source = new FfmpegSource(kind, port, proc, socket);
    proc.stderr?.on('data', (d: Buffer) => {
      if (source.stderr.length < 8192) source.stderr += d.toString();
    });
    proc.on('error', (err) => {
      source.stderr += `spawn error: ${err.message}\n`;
    });
    socket.on('message', (msg) => {
      if (msg.length < 12 || msg[0]! >> 6 !== 2) return;
      const pt = msg[1]!;
      if (pt >= 192 && pt <= 223) return; // RTCP (SR/SDES/BYE) from ffmpeg
      source.packets++;
      onRtp(msg);
    });
    return source;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const proc = this.process;
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = once(proc, 'exit');
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 2000);
      await exited;
      clearTimeout(timer);
    }
    this.socket.close();
  }
}
