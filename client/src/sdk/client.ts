import { Device } from 'mediasoup-client';
import type { types as ms } from 'mediasoup-client';
import type { RtpCapabilities, RtpParameters } from '../../../src/protocol/media-parameters.js';
import type { PeerInfo, ServerNotifications, ServerRequests } from '../../../src/protocol/signaling.js';
import { measureAgentRtts } from './agent-rtt.js';
import { TypedEmitter } from './emitter.js';
import { SignalError, toSignalError } from './errors.js';
import { type Ending, ProtooSocket, endingOf } from './protoo.js';
import { type Permissions, type TokenInfo, decodeToken, socketUrl } from './token.js';

export type Source = 'microphone' | 'camera' | 'screen';
export type ConnectionState = 'new' | 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'closed';

export interface RemoteTrack {
  /** The consumer id (unique per subscription). */
  id: string;
  producerId: string;
  peerId: string;
  kind: 'audio' | 'video';
  /** What the publisher said it is (producer appData.source), when the gateway passes it on. */
  source: Source | 'unknown';
  track: MediaStreamTrack;
  /** Receiving (auto-subscribed or subscribe()d) rather than only available. */
  subscribed: boolean;
  /** The publisher muted it (its producer is paused). */
  muted: boolean;
}

export interface RemotePeer {
  id: string;
  displayName: string;
  /** presenter, viewer, or a role the deployment configured. */
  role: string;
  device: Record<string, unknown>;
  tracks: RemoteTrack[];
}

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
export type RoomClientEvents = {
  connectionState: [state: ConnectionState, previous: ConnectionState, reason?: string];
  /** join() (or a rejoin) completed; `peers` are the others in the room. */
  joined: [info: { peerId: string; peers: RemotePeer[]; rejoined: boolean }];
  peerJoined: [peer: RemotePeer];
  peerLeft: [peer: RemotePeer];
  peerUpdated: [peer: RemotePeer];
  /** A remote track is published and can be received (always before its trackAdded). */
  trackAvailable: [track: RemoteTrack, peer: RemotePeer];
  /** A remote track is gone: unpublished, its peer left, or the connection was lost (after its trackRemoved). */
  trackUnavailable: [track: RemoteTrack, peer: RemotePeer];
  /** A remote track is being received (auto-subscribed, or subscribe()d). */
  trackAdded: [track: RemoteTrack, peer: RemotePeer];
  /** A remote track is no longer received (unsubscribe(), or it became unavailable). */
  trackRemoved: [track: RemoteTrack, peer: RemotePeer];
  trackMuted: [track: RemoteTrack, peer: RemotePeer];
  trackUnmuted: [track: RemoteTrack, peer: RemotePeer];
  localTrackPublished: [track: LocalTrack];
  localTrackUnpublished: [track: LocalTrack];
  localTrackMuted: [track: LocalTrack];
  localTrackUnmuted: [track: LocalTrack];
  activeSpeaker: [speaker: ActiveSpeaker];
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
  reconnect?: false | { maxAttempts?: number; initialDelayMs?: number; maxDelayMs?: number };
  /** Per-request timeout (ms); default 15000. */
  requestTimeoutMs?: number;
  /** Stable peer id (default: random). A rejoin reuses it, so the gateway replaces the old peer. */
  peerId?: string;
  iceServers?: RTCIceServer[];
  /** Opaque device info sent with join (shown to other peers). */
  device?: { flag?: string; name?: string; version?: string };
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

interface Subscription {
  info: RemoteTrack;
  consumer: ms.Consumer;
}

interface PeerState {
  info: RemotePeer;
  announced: boolean;
  subs: Map<string, Subscription>;
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A participant of one room: connect with a token, join, publish and
 * subscribe; rejoins by itself (with a token from `getToken`) when the
 * network or the media agent is lost, restoring its publications.
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
  private readonly peerStates = new Map<string, PeerState>();
  private readonly publications = new Map<Source, Publication>();
  private readonly autoSubscribe: boolean;
  private readonly wantedPeers = new Set<string>();
  private rejoining?: Promise<void>;
  private left = false;
  private displayNameValue: string;

  constructor(private readonly options: RoomClientOptions) {
    super();
    this.token = options.token;
    this.tokenInfo = decodeToken(options.token);
    this.peerId = options.peerId ?? randomId();
    this.autoSubscribe = options.autoSubscribe ?? true;
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
    return [...this.peerStates.values()].filter((p) => p.announced).map((p) => p.info);
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
    this.wantedPeers.add(peerId);
    const state = this.peerStates.get(peerId);
    if (!state) return;
    await Promise.all(
      [...state.subs.values()].filter((s) => !s.info.subscribed && kinds.includes(s.info.kind)).map((s) => this.setSubscribed(state, s, true)),
    );
  }

  /** Stops receiving a peer's tracks (the server stops forwarding them); subscribe() resumes. */
  async unsubscribe(peerId: string, kinds: ('audio' | 'video')[] = ['audio', 'video']): Promise<void> {
    if (kinds.length === 2) this.wantedPeers.delete(peerId);
    const state = this.peerStates.get(peerId);
    if (!state) return;
    await Promise.all(
      [...state.subs.values()].filter((s) => s.info.subscribed && kinds.includes(s.info.kind)).map((s) => this.setSubscribed(state, s, false)),
    );
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
    const session = this.session;
    if (session?.joined && !session.socket.closed) {
      await session.socket.request('leave', {}, 2000).catch(() => undefined);
    }
    if (session) this.teardown(session, 'left');
    for (const state of [...this.peerStates.values()]) this.dropPeer(state);
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
    socket.onNotification = (method, data) => this.onNotification(session, method, data);
    socket.onRequest = (method, data) => this.onServerRequest(session, method, data);
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
    });
    session.joined = true;
    // Peers gone while we were away leave; new ones join; known ones stay (their tracks come back as new consumers).
    const present = new Set(peers.map((p) => p.id));
    for (const state of [...this.peerStates.values()]) if (!present.has(state.info.id)) this.dropPeer(state);
    for (const peer of peers) this.upsertPeer(peer);
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
        void this.rejoin('transport failed');
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

  private upsertPeer(info: PeerInfo): PeerState {
    let state = this.peerStates.get(info.id);
    if (!state) {
      state = { info: { ...info, tracks: [] }, announced: false, subs: new Map() };
      this.peerStates.set(info.id, state);
    } else {
      state.info.displayName = info.displayName;
      state.info.role = info.role;
      state.info.device = info.device;
    }
    if (!state.announced) {
      state.announced = true;
      this.emit('peerJoined', state.info);
      for (const sub of state.subs.values()) this.announceTrack(state, sub);
    }
    return state;
  }

  private announceTrack(state: PeerState, sub: Subscription): void {
    if (!state.announced) return;
    this.emit('trackAvailable', sub.info, state.info);
    if (sub.info.subscribed) this.emit('trackAdded', sub.info, state.info);
  }

  private removeTrack(state: PeerState, sub: Subscription): void {
    state.subs.delete(sub.info.id);
    state.info.tracks = state.info.tracks.filter((t) => t !== sub.info);
    if (!sub.consumer.closed) sub.consumer.close();
    if (!state.announced) return;
    if (sub.info.subscribed) this.emit('trackRemoved', sub.info, state.info);
    this.emit('trackUnavailable', sub.info, state.info);
  }

  private dropPeer(state: PeerState): void {
    for (const sub of [...state.subs.values()]) this.removeTrack(state, sub);
    this.peerStates.delete(state.info.id);
    if (state.announced) this.emit('peerLeft', state.info);
  }

  private async setSubscribed(state: PeerState, sub: Subscription, subscribed: boolean): Promise<void> {
    const socket = this.session?.socket;
    if (!socket) return;
    await socket.request(subscribed ? 'resumeConsumer' : 'pauseConsumer', { consumerId: sub.consumer.id });
    if (subscribed) sub.consumer.resume();
    else sub.consumer.pause();
    sub.info.subscribed = subscribed;
    if (state.announced) this.emit(subscribed ? 'trackAdded' : 'trackRemoved', sub.info, state.info);
  }

  private async onServerRequest<M extends keyof ServerRequests>(session: Session, method: M, data: ServerRequests[M]): Promise<unknown> {
    if (method !== 'newConsumer') throw new Error(`${method} is not supported by this client`);
    const d = data as ServerRequests['newConsumer'];
    if (this.session !== session || !session.recv) throw new Error('no receiving transport');
    const consumer = await session.recv.consume({
      id: d.id,
      producerId: d.producerId,
      kind: d.kind,
      rtpParameters: d.rtpParameters as ms.RtpParameters,
      // Same stream id for a peer's microphone and camera: the browser keeps them in lip sync.
      streamId: `${d.peerId}-${d.appData.source === 'screen' ? 'screen' : 'av'}`,
      appData: { ...d.appData, peerId: d.peerId },
    });
    const source = d.appData.source;
    const subscribed = this.autoSubscribe || this.wantedPeers.has(d.peerId);
    const info: RemoteTrack = {
      id: consumer.id,
      producerId: d.producerId,
      peerId: d.peerId,
      kind: d.kind,
      source: source === 'microphone' || source === 'camera' || source === 'screen' ? source : 'unknown',
      track: consumer.track,
      subscribed,
      muted: d.producerPaused,
    };
    const state = this.peerStates.get(d.peerId) ?? this.placeholderPeer(d.peerId);
    const sub: Subscription = { info, consumer };
    state.subs.set(consumer.id, sub);
    state.info.tracks.push(info);
    consumer.on('transportclose', () => {
      if (state.subs.has(consumer.id)) this.removeTrack(state, sub);
    });
    if (!subscribed) {
      // The gateway resumes a consumer once this request is answered; pause it right after, so nothing flows.
      queueMicrotask(() => {
        consumer.pause();
        session.socket.request('pauseConsumer', { consumerId: consumer.id }).catch(() => undefined);
      });
    }
    this.announceTrack(state, sub);
    return {};
  }

  /** A consumer can arrive before the peer's info (join answer / newPeer): hold it until then. */
  private placeholderPeer(peerId: string): PeerState {
    const state: PeerState = {
      info: { id: peerId, displayName: peerId, role: 'presenter', device: {}, tracks: [] },
      announced: false,
      subs: new Map(),
    };
    this.peerStates.set(peerId, state);
    return state;
  }

  private findSub(consumerId: string): [PeerState, Subscription] | undefined {
    for (const state of this.peerStates.values()) {
      const sub = state.subs.get(consumerId);
      if (sub) return [state, sub];
    }
    return undefined;
  }

  private onNotification<M extends keyof ServerNotifications>(session: Session, method: M, raw: ServerNotifications[M]): void {
    if (method === 'closing') {
      session.closing = raw as ServerNotifications['closing'];
      return;
    }
    if (this.session !== session) return;
    switch (method) {
      case 'newPeer':
        this.upsertPeer(raw as PeerInfo);
        break;
      case 'peerClosed': {
        const state = this.peerStates.get((raw as ServerNotifications['peerClosed']).peerId);
        if (state) this.dropPeer(state);
        break;
      }
      case 'peerDisplayNameChanged': {
        const d = raw as ServerNotifications['peerDisplayNameChanged'];
        const state = this.peerStates.get(d.peerId);
        if (state) {
          state.info.displayName = d.displayName;
          if (state.announced) this.emit('peerUpdated', state.info);
        }
        break;
      }
      case 'consumerClosed': {
        const found = this.findSub((raw as ServerNotifications['consumerClosed']).consumerId);
        if (found) this.removeTrack(...found);
        break;
      }
      case 'consumerPaused':
      case 'consumerResumed': {
        const found = this.findSub((raw as ServerNotifications['consumerPaused']).consumerId);
        if (!found) break;
        const [state, sub] = found;
        sub.info.muted = method === 'consumerPaused';
        if (state.announced) this.emit(sub.info.muted ? 'trackMuted' : 'trackUnmuted', sub.info, state.info);
        break;
      }
      case 'activeSpeaker': {
        const d = raw as ServerNotifications['activeSpeaker'];
        this.emit('activeSpeaker', { peerId: d.peerId, ...(d.volume !== undefined ? { volume: d.volume } : {}) });
        break;
      }
      default:
        break;
    }
  }

  private closingError(closing: Ending): SignalError {
    return new SignalError(closing.errorName, closing.reason);
  }

  /** Rejoin or stop as the gateway said (its `closing` notification, else the close itself). */
  private onSocketClose(session: Session, code: number, reason: string): void {
    if (this.session !== session || this.left) return;
    const ending = session.closing ?? endingOf(code, reason);
    this.teardown(session, `socket closed (${code})`);
    if (ending.rejoin && session.joined) {
      void this.rejoin(ending.errorName === 'MEDIA_AGENT_LOST' ? 'media agent lost' : `connection lost (${ending.errorName}, ${code})`);
      return;
    }
    const error = this.closingError(ending);
    for (const state of [...this.peerStates.values()]) this.dropPeer(state);
    this.setState('disconnected', error.message);
    this.emit('error', error);
  }

  /** Closes a session's socket and transports; remote tracks go, local tracks stay (for republishing). */
  private teardown(session: Session, reason: string): void {
    if (this.session === session) this.session = undefined;
    for (const state of this.peerStates.values()) for (const sub of [...state.subs.values()]) this.removeTrack(state, sub);
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

  /** Rejoins with a fresh token, with backoff, and republishes what was published. */
  private rejoin(reason: string): Promise<void> {
    this.rejoining ??= (async () => {
      const old = this.session;
      if (old) this.teardown(old, reason);
      this.setState('reconnecting', reason);
      const cfg = this.options.reconnect === false ? { maxAttempts: 0 } : (this.options.reconnect ?? {});
      const maxAttempts = cfg.maxAttempts ?? 8;
      let delay = cfg.initialDelayMs ?? 250;
      let lastError: SignalError | undefined;
      for (let attempt = 1; attempt <= maxAttempts && !this.left; attempt++) {
        if (!this.options.getToken) {
          lastError = new SignalError('TOKEN_REFRESH_FAILED', 'no getToken() callback: cannot rejoin (tokens work once)');
          break;
        }
        let session: Session | undefined;
        try {
          const token = await this.options.getToken().catch((err: unknown) => {
            throw new SignalError('TOKEN_REFRESH_FAILED', `getToken() failed: ${(err as Error)?.message ?? String(err)}`, undefined, err);
          });
          if (this.left) return;
          this.token = token;
          session = await this.openSession(token);
          this.session = session;
          await this.joinSession(session, true);
          for (const pub of this.publications.values()) {
            if (pub.local.track.readyState === 'ended') continue;
            pub.producer = await this.produce(session, pub.local);
          }
          if (this.left) return;
          this.setState('connected', 'rejoined');
          return;
        } catch (err) {
          lastError = toSignalError(err, 'CONNECTION_FAILED');
          if (session) this.teardown(session, 'rejoin failed');
          // The token itself is refused for good: a new token from the same source will not do better.
          if (/^(KICKED|ROOM_CLOSED|TOKEN_BAD_SIGNATURE|TOKEN_MALFORMED)$/.test(lastError.code)) break;
        }
        await sleep(delay);
        delay = Math.min(delay * 2, cfg.maxDelayMs ?? 5000);
      }
      if (this.left) return;
      for (const state of [...this.peerStates.values()]) this.dropPeer(state);
      this.setState('disconnected', lastError?.message ?? 'could not rejoin');
      this.emit('error', new SignalError('RECONNECT_FAILED', `could not rejoin: ${lastError?.toString() ?? 'no attempt allowed'}`, undefined, lastError));
    })().finally(() => {
      this.rejoining = undefined;
    });
    return this.rejoining;
  }
}
