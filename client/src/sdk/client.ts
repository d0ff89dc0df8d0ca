import { Device } from 'mediasoup-client';
import type { types as ms } from 'mediasoup-client';
import type { RtpCapabilities, RtpParameters } from '../../../src/protocol/media-parameters.js';
import type { ServerNotification, ServerNotifications, ServerRequest } from '../../../src/protocol/notifications.js';
import { measureAgentRtts } from './agent-rtt.js';
import { TypedEmitter } from './emitter.js';
import { SignalError, toSignalError } from './errors.js';
import { type Ending, ProtooSocket, endingOf } from './protoo.js';
import { type ReconnectOptions, Reconnector } from './reconnect.js';
import { type RemotePeer, RemoteRoster, type RosterEvents, type Source } from './roster.js';
import { type Permissions, type TokenInfo, decodeToken, socketUrl } from './token.js';

export type { RemotePeer, RemoteTrack, Source } from './roster.js';
export type ConnectionState = 'new' | 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'closed';

export interface LocalTrack {
  source: Source;
  kind: 'audio' | 'video';
  track: MediaStreamTrack;
  /** The producer id; changes when the SDK republishes after a rejoin. */
  producerId?: string;
  muted: boolean;
  simulcast: boolean;
}

export interface ActiveSpeaker {
  /** null: silence. May be this client's own peer id. */
  peerId: string | null;
  volume?: number;
}

/** Typed events of a RoomClient. */
export type RoomClientEvents = RosterEvents & {
  connectionState: [state: ConnectionState, previous: ConnectionState, reason?: string];
  /** join() (or a rejoin) completed; `peers` are the others in the room. */
  joined: [info: { peerId: string; peers: RemotePeer[]; rejoined: boolean }];
  localTrackPublished: [track: LocalTrack];
  localTrackUnpublished: [track: LocalTrack];
  localTrackMuted: [track: LocalTrack];
  localTrackUnmuted: [track: LocalTrack];
  activeSpeaker: [speaker: ActiveSpeaker];
  /** The app's server changed a participant (this one too: its name, metadata, permissions) through Nuve's room API. */
  participantUpdated: [update: ServerNotifications['participantUpdated']];
  /** Data the app's server sent to the room, or to this participant, with its topic. */
  data: [message: ServerNotifications['roomData']];
  /** The app's server changed the room's metadata. */
  roomMetadataChanged: [metadata: unknown];
  /** Background failures (reconnection, kicks, transports). Method calls reject with the same SignalError type instead. */
  error: [error: SignalError];
};

export interface RoomClientOptions {
  /** A one-time token from your app server (Nuve `POST /rooms/:room/tokens`). */
  token: string;
  /**
   * A fresh token for rejoining after a network loss or a lost media agent.
   * Without it the SDK cannot rejoin (tokens work once) and ends in `disconnected`.
   */
  getToken?: () => Promise<string>;
  displayName?: string;
  /** Receive every remote track (default), or only what subscribe() asks for. */
  autoSubscribe?: boolean;
  /** Rejoin attempts and their backoff; false: never rejoin. */
  reconnect?: ReconnectOptions;
  /** Per-request timeout (ms); default 15000. */
  requestTimeoutMs?: number;
  /** Stable peer id (default: random). A rejoin reuses it, so the gateway replaces the old peer. */
  peerId?: string;
  iceServers?: RTCIceServer[];
  /** Opaque device info sent with join (shown to other peers). */
  device?: { flag?: string; name?: string; version?: string };
  /** Large audiences: the others are not told of this peer until it publishes (join's `listener`). */
  listener?: boolean;
}

export interface CameraOptions {
  deviceId?: string;
  /** Three spatial layers (¼, ½, full resolution). Default true. */
  simulcast?: boolean;
  width?: number;
  height?: number;
  frameRate?: number;
  /** Publish this track instead of opening the camera. */
  track?: MediaStreamTrack;
}

export interface MicrophoneOptions {
  deviceId?: string;
  track?: MediaStreamTrack;
}

interface Publication {
  local: LocalTrack;
  producer?: ms.Producer;
}

interface Session {
  socket: ProtooSocket;
  device: Device;
  tokenInfo: TokenInfo;
  recv?: ms.Transport;
  send?: ms.Transport;
  sendCreating?: Promise<ms.Transport>;
  joined: boolean;
  /** Set by a `closing` notification just before the gateway closes the socket. */
  closing?: Ending;
}

const SIMULCAST_ENCODINGS: ms.RtpEncodingParameters[] = [
  { scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

/** Longest the join waits for agent RTT measurements, whatever the gateway asks for. */
const MAX_PROBE_MS = 5_000;

function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * A participant of one room: connect with a token, join, publish and
 * subscribe; rejoins by itself (with a token from `getToken`) when the
 * network or the media agent is lost, restoring its publications.
 *
 * It owns the session (socket, transports) and the local publications; the
 * others in the room are its RemoteRoster's (roster.ts), and the rejoin loop
 * its Reconnector's (reconnect.ts), each closed by leave().
 *
 * ```ts
 * const room = new RoomClient({ token, getToken: () => myServer.token(roomId), displayName: 'Ada' });
 * room.on('trackAdded', (track, peer) => attach(track.track, peer.displayName));
 * await room.join();
 * await room.publishMicrophone();
 * await room.publishCamera({ simulcast: true });
 * ```
 */
export class RoomClient extends TypedEmitter<RoomClientEvents> {
  readonly peerId: string;
  private token: string;
  private tokenInfo: TokenInfo;
  private stateValue: ConnectionState = 'new';
  private session?: Session;
  private readonly roster: RemoteRoster;
  private readonly reconnector: Reconnector;
  private readonly publications = new Map<Source, Publication>();
  private left = false;
  private displayNameValue: string;

  constructor(private readonly options: RoomClientOptions) {
    super();
    this.token = options.token;
    this.tokenInfo = decodeToken(options.token);
    this.peerId = options.peerId ?? randomId();
    this.roster = new RemoteRoster({
      autoSubscribe: options.autoSubscribe ?? true,
      emit: (...event) => this.emit(...event),
      socket: () => this.session?.socket,
    });
    this.reconnector = new Reconnector(options, {
      begin: (reason) => {
        if (this.session) this.teardown(this.session, reason);
        this.setState('reconnecting', reason);
      },
      attempt: (token) => this.rejoinWith(token),
      succeeded: () => this.setState('connected', 'rejoined'),
      failed: (error, reason) => {
        this.roster.close();
        this.setState('disconnected', reason);
        this.emit('error', error);
      },
    });
    this.displayNameValue = options.displayName ?? (this.tokenInfo.userName || 'guest');
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  /** The role the token grants (presenter, viewer, or one the deployment configured). */
  get role(): string {
    return this.tokenInfo.role;
  }

  /** What the token lets this client do: `publish` (microphone, camera, screen), `subscribe`, `publishData`, `record`. */
  get permissions(): Permissions {
    return this.tokenInfo.permissions;
  }

  get roomId(): string {
    return this.tokenInfo.roomId;
  }

  get displayName(): string {
    return this.displayNameValue;
  }

  get peers(): RemotePeer[] {
    return this.roster.peers;
  }

  get localTracks(): LocalTrack[] {
    return [...this.publications.values()].map((p) => p.local);
  }

  /** Opens the signaling connection (token) and loads the room's codecs. join() does it when needed. */
  async connect(): Promise<void> {
    if (this.left) throw new SignalError('NOT_JOINED', 'this client has left; create a new one');
    if (this.session) return;
    this.setState('connecting');
    try {
      this.session = await this.openSession(this.token);
    } catch (err) {
      this.setState('disconnected', (err as Error).message);
      throw toSignalError(err, 'CONNECTION_FAILED');
    }
  }

  /** Enters the room: after this, remote peers and tracks arrive as events. */
  async join(): Promise<{ peers: RemotePeer[] }> {
    await this.connect();
    const session = this.session!;
    if (session.joined) return { peers: this.peers };
    try {
      await this.joinSession(session, false);
    } catch (err) {
      this.teardown(session, 'join failed');
      this.setState('disconnected', (err as Error).message);
      throw toSignalError(err);
    }
    this.setState('connected');
    return { peers: this.peers };
  }

  /** Publishes the microphone (Opus). */
  async publishMicrophone(opts: MicrophoneOptions = {}): Promise<LocalTrack> {
    const track =
      opts.track ??
      (await this.getMedia(() =>
        navigator.mediaDevices.getUserMedia({
          audio: opts.deviceId ? { deviceId: { exact: opts.deviceId } } : { echoCancellation: true, noiseSuppression: true },
        }),
      )).getAudioTracks()[0]!;
    return this.publish('microphone', track, false, !opts.track);
  }

  /** Publishes the camera, by default as three simulcast layers. */
  async publishCamera(opts: CameraOptions = {}): Promise<LocalTrack> {
    const track =
      opts.track ??
      (await this.getMedia(() =>
        navigator.mediaDevices.getUserMedia({
          video: {
            ...(opts.deviceId ? { deviceId: { exact: opts.deviceId } } : {}),
            width: { ideal: opts.width ?? 1280 },
            height: { ideal: opts.height ?? 720 },
            frameRate: { ideal: opts.frameRate ?? 30 },
          },
        }),
      )).getVideoTracks()[0]!;
    return this.publish('camera', track, opts.simulcast ?? true, !opts.track);
  }

  /** Publishes a screen, window or tab (the browser asks which). Ends by itself when the user stops sharing. */
  async publishScreen(opts: { track?: MediaStreamTrack } = {}): Promise<LocalTrack> {
    const track =
      opts.track ??
      (await this.getMedia(() => navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false }))).getVideoTracks()[0]!;
    const local = await this.publish('screen', track, false, !opts.track);
    track.addEventListener('ended', () => void this.unpublish('screen').catch(() => undefined), { once: true });
    return local;
  }

  /** Stops publishing a source and releases its device. */
  async unpublish(source: Source): Promise<void> {
    const pub = this.publications.get(source);
    if (!pub) return;
    this.publications.delete(source);
    const producer = pub.producer;
    pub.producer = undefined;
    if (producer && !producer.closed) {
      producer.close();
      await this.session?.socket.request('closeProducer', { producerId: producer.id }).catch(() => undefined);
    }
    pub.local.track.stop();
    this.emit('localTrackUnpublished', pub.local);
  }

  /** Mutes a published source: the producer pauses, so nothing is sent and others see it muted. */
  async mute(source: Source): Promise<void> {
    await this.setMuted(source, true);
  }

  async unmute(source: Source): Promise<void> {
    await this.setMuted(source, false);
  }

  isMuted(source: Source): boolean {
    return this.publications.get(source)?.local.muted ?? true;
  }

  /**
   * Receives a peer's tracks (all, or the given kinds). With autoSubscribe on
   * everything is received anyway; use unsubscribe() to stop receiving.
   */
  async subscribe(peerId: string, kinds: ('audio' | 'video')[] = ['audio', 'video']): Promise<void> {
    await this.roster.subscribe(peerId, kinds);
  }

  /** Stops receiving a peer's tracks (the server stops forwarding them); subscribe() resumes. */
  async unsubscribe(peerId: string, kinds: ('audio' | 'video')[] = ['audio', 'video']): Promise<void> {
    await this.roster.unsubscribe(peerId, kinds);
  }

  async changeDisplayName(displayName: string): Promise<void> {
    this.displayNameValue = displayName;
    if (this.session?.joined) await this.session.socket.request('changeDisplayName', { displayName });
  }

  /** WebRTC statistics of the sending and receiving transports (inbound-rtp, outbound-rtp, candidate pairs, …). */
  async getStats(): Promise<{ send?: RTCStatsReport; recv?: RTCStatsReport }> {
    const s = this.session;
    return {
      ...(s?.send && !s.send.closed ? { send: await s.send.getStats() } : {}),
      ...(s?.recv && !s.recv.closed ? { recv: await s.recv.getStats() } : {}),
    };
  }

  /** Leaves the room, stops local devices and closes the connection. The client cannot be reused. */
  async leave(): Promise<void> {
    if (this.left) return;
    this.left = true;
    this.reconnector.close();
    const session = this.session;
    if (session?.joined && !session.socket.closed) {
      await session.socket.request('leave', {}, 2000).catch(() => undefined);
    }
    if (session) this.teardown(session, 'left');
    this.roster.close();
    for (const source of [...this.publications.keys()]) {
      const pub = this.publications.get(source)!;
      this.publications.delete(source);
      pub.local.track.stop();
      this.emit('localTrackUnpublished', pub.local);
    }
    this.setState('closed', 'left');
  }

  // ---------------------------------------------------------------- internals

  private setState(state: ConnectionState, reason?: string): void {
    if (state === this.stateValue) return;
    const previous = this.stateValue;
    this.stateValue = state;
    this.emit('connectionState', state, previous, reason);
  }

  private async getMedia(open: () => Promise<MediaStream>): Promise<MediaStream> {
    if (!navigator.mediaDevices) {
      throw new SignalError('MEDIA_UNSUPPORTED', 'media devices need a secure context (https or localhost)');
    }
    try {
      return await open();
    } catch (err) {
      throw toSignalError(err, 'MEDIA_DEVICE_ERROR');
    }
  }

  private async openSession(token: string): Promise<Session> {
    const tokenInfo = decodeToken(token);
    const socket = await ProtooSocket.open(socketUrl(tokenInfo, token, this.peerId), {
      timeoutMs: 10_000,
      requestTimeoutMs: this.options.requestTimeoutMs ?? 15_000,
    });
    const session: Session = { socket, device: new Device(), tokenInfo, joined: false };
    socket.onNotification = (n) => this.onNotification(session, n);
    socket.onRequest = (r) => this.onServerRequest(session, r);
    socket.onClose = (code, reason) => this.onSocketClose(session, code, reason);
    try {
      // Before anything places this peer on an agent (getRouterRtpCapabilities does).
      await this.reportAgentRtts(socket);
      const routerRtpCapabilities = await socket.request('getRouterRtpCapabilities');
      await session.device.load({ routerRtpCapabilities });
    } catch (err) {
      // A token refused by the gateway arrives as a `closing` notification, then the close: report that.
      socket.close();
      throw session.closing ? this.closingError(session.closing) : err;
    }
    this.tokenInfo = tokenInfo;
    return session;
  }

  /**
   * TTL-BEST rooms: measures the round-trip time to each candidate media agent
   * and tells the gateway, which places the peer on the nearest one. Best
   * effort: any failure (an older gateway answering UNKNOWN_METHOD, probes
   * unreachable) leaves the placement to the gateway's default.
   */
  private async reportAgentRtts(socket: ProtooSocket): Promise<void> {
    try {
      const { probes, timeoutMs } = await socket.request('getAgentProbes');
      if (probes.length < 2) return; // nothing to choose between
      // The join waits for this: bounded even if the gateway asks for more.
      const rtts = await measureAgentRtts(probes, Math.min(timeoutMs, MAX_PROBE_MS));
      if (Object.keys(rtts).length > 0) await socket.request('reportAgentRtts', { rtts });
    } catch {
      // Joining goes on without a measurement.
    }
  }

  private async joinSession(session: Session, rejoined: boolean): Promise<void> {
    const { socket, device } = session;
    const info = await socket.request('createWebRtcTransport', { producing: false, consuming: true });
    session.recv = device.createRecvTransport({ ...info, ...(this.options.iceServers ? { iceServers: this.options.iceServers } : {}) });
    this.wireTransport(session, session.recv);
    const { peers } = await socket.request('join', {
      displayName: this.displayNameValue,
      device: this.options.device ?? { flag: 'mediasoup-signal', name: navigator.userAgent.slice(0, 128) },
      rtpCapabilities: device.recvRtpCapabilities as unknown as RtpCapabilities,
      ...(this.options.listener ? { listener: true } : {}),
    });
    session.joined = true;
    this.roster.sync(peers);
    this.emit('joined', { peerId: this.peerId, peers: this.peers, rejoined });
  }

  private wireTransport(session: Session, transport: ms.Transport): void {
    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      session.socket
        .request('connectWebRtcTransport', { transportId: transport.id, dtlsParameters })
        .then(() => callback(), errback);
    });
    transport.on('connectionstatechange', (state) => {
      if (state === 'failed' && this.session === session && !this.left) {
        this.emit('error', new SignalError('TRANSPORT_FAILED', `${transport.direction} transport failed (ICE/DTLS); rejoining`));
        void this.reconnector.rejoin('transport failed');
      }
    });
  }

  private async sendTransport(session: Session): Promise<ms.Transport> {
    if (session.send) return session.send;
    session.sendCreating ??= (async () => {
      const info = await session.socket.request('createWebRtcTransport', { producing: true, consuming: false });
      const transport = session.device.createSendTransport({ ...info, ...(this.options.iceServers ? { iceServers: this.options.iceServers } : {}) });
      this.wireTransport(session, transport);
      transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
        session.socket
          .request('produce', {
            transportId: transport.id,
            kind,
            rtpParameters: rtpParameters as unknown as RtpParameters,
            appData: appData as Record<string, unknown>,
          })
          .then(({ id }) => callback({ id }), errback);
      });
      session.send = transport;
      return transport;
    })();
    try {
      return await session.sendCreating;
    } finally {
      session.sendCreating = undefined;
    }
  }

  private async publish(source: Source, track: MediaStreamTrack, simulcast: boolean, ownsTrack: boolean): Promise<LocalTrack> {
    const session = this.session;
    try {
      if (!session?.joined) throw new SignalError('NOT_JOINED', `join the room before publishing the ${source}`);
      if (this.publications.has(source)) await this.unpublish(source);
      const local: LocalTrack = { source, kind: track.kind as 'audio' | 'video', track, muted: false, simulcast };
      const pub: Publication = { local };
      pub.producer = await this.produce(session, local);
      this.publications.set(source, pub);
      this.emit('localTrackPublished', local);
      return local;
    } catch (err) {
      if (ownsTrack) track.stop();
      throw toSignalError(err);
    }
  }

  private async produce(session: Session, local: LocalTrack): Promise<ms.Producer> {
    if (!session.device.canProduce(local.kind)) {
      throw new SignalError('MEDIA_UNSUPPORTED', `this browser cannot send ${local.kind} with the room's codecs`);
    }
    const transport = await this.sendTransport(session);
    const producer = await transport.produce({
      track: local.track,
      // Tracks outlive producers: a rejoin republishes the same track.
      stopTracks: false,
      appData: { source: local.source },
      ...(local.kind === 'video' && local.simulcast ? { encodings: SIMULCAST_ENCODINGS, codecOptions: { videoGoogleStartBitrate: 1000 } } : {}),
      ...(local.kind === 'audio' ? { codecOptions: { opusStereo: false, opusDtx: true, opusFec: true } } : {}),
    });
    local.producerId = producer.id;
    if (local.muted) {
      producer.pause();
      await session.socket.request('pauseProducer', { producerId: producer.id });
    }
    return producer;
  }

  private async setMuted(source: Source, muted: boolean): Promise<void> {
    const pub = this.publications.get(source);
    if (!pub) throw new SignalError('NOT_PUBLISHED', `the ${source} is not published`);
    if (pub.local.muted === muted) return;
    pub.local.muted = muted;
    const producer = pub.producer;
    if (producer && !producer.closed) {
      if (muted) producer.pause();
      else producer.resume();
      await this.session?.socket
        .request(muted ? 'pauseProducer' : 'resumeProducer', { producerId: producer.id })
        .catch((err: unknown) => this.emit('error', toSignalError(err)));
    } else {
      pub.local.track.enabled = !muted;
    }
    this.emit(muted ? 'localTrackMuted' : 'localTrackUnmuted', pub.local);
  }

  /** The app's server paused or resumed one of this client's producers: the local state follows, nothing is asked back. */
  private mutedByServer(producerId: string, muted: boolean): void {
    const pub = [...this.publications.values()].find((p) => p.producer?.id === producerId);
    if (!pub || pub.local.muted === muted) return;
    pub.local.muted = muted;
    if (muted) pub.producer!.pause();
    else pub.producer!.resume();
    this.emit(muted ? 'localTrackMuted' : 'localTrackUnmuted', pub.local);
  }

  private async onServerRequest(session: Session, r: ServerRequest): Promise<unknown> {
    if (r.method !== 'newConsumer') throw new Error(`${r.method} is not supported by this client`);
    if (this.session !== session || !session.recv) throw new Error('no receiving transport');
    await this.roster.addConsumer(session.recv, session.socket, r.data);
    return {};
  }

  private onNotification(session: Session, n: ServerNotification): void {
    if (n.method === 'closing') {
      session.closing = n.data;
      return;
    }
    if (this.session !== session) return;
    switch (n.method) {
      case 'activeSpeaker':
        this.emit('activeSpeaker', { peerId: n.data.peerId, ...(n.data.volume !== undefined ? { volume: n.data.volume } : {}) });
        return;
      case 'participantUpdated':
        this.emit('participantUpdated', n.data);
        return;
      case 'roomData':
        this.emit('data', n.data);
        return;
      case 'roomMetadataChanged':
        this.emit('roomMetadataChanged', n.data.metadata);
        return;
      case 'trackMuted':
        this.mutedByServer(n.data.producerId, n.data.muted);
        return;
    }
    this.roster.onNotification(n);
  }

  private closingError(closing: Ending): SignalError {
    return SignalError.fromServer(closing.errorName, closing.reason);
  }

  /** Rejoin or stop as the gateway said (its `closing` notification, else the close itself). */
  private onSocketClose(session: Session, code: number, reason: string): void {
    if (this.session !== session || this.left) return;
    const ending = session.closing ?? endingOf(code, reason);
    this.teardown(session, `socket closed (${code})`);
    if (ending.rejoin && session.joined) {
      void this.reconnector.rejoin(ending.errorName === 'MEDIA_AGENT_LOST' ? 'media agent lost' : `connection lost (${ending.errorName}, ${code})`);
      return;
    }
    const error = this.closingError(ending);
    this.roster.close();
    this.setState('disconnected', error.message);
    this.emit('error', error);
  }

  /** Closes a session's socket and transports; remote tracks go, local tracks stay (for republishing). */
  private teardown(session: Session, reason: string): void {
    if (this.session === session) this.session = undefined;
    this.roster.clearTracks();
    for (const pub of this.publications.values()) {
      if (pub.producer && !pub.producer.closed) pub.producer.close();
      pub.producer = undefined;
      pub.local.producerId = undefined;
    }
    session.send?.close();
    session.recv?.close();
    session.socket.onClose = () => undefined;
    session.socket.close(1000, reason.slice(0, 100));
  }

  /** One rejoin attempt: a new session under the same peer id, joined, with the publications produced again. */
  private async rejoinWith(token: string): Promise<void> {
    let session: Session | undefined;
    try {
      this.token = token;
      session = await this.openSession(token);
      this.session = session;
      await this.joinSession(session, true);
      for (const pub of this.publications.values()) {
        if (pub.local.track.readyState === 'ended') continue;
        pub.producer = await this.produce(session, pub.local);
      }
    } catch (err) {
      if (session) this.teardown(session, 'rejoin failed');
      throw err;
    }
  }
}
