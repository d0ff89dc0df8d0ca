import type { types as ms } from 'mediasoup-client';
import type { PeerInfo, ServerNotification, ServerRequests } from '../../../src/protocol/notifications.js';
import type { EventArgs } from './emitter.js';
import type { ProtooSocket } from './protoo.js';

export type Source = 'microphone' | 'camera' | 'screen';

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

/** The RoomClient events about the others in the room. */
export type RosterEvents = {
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
};


interface Subscription {
  info: RemoteTrack;
  consumer: ms.Consumer;
}

interface PeerState {
  info: RemotePeer;
  /** peerJoined was emitted: its info arrived (join answer or newPeer), not only a consumer of it. */
  announced: boolean;
  subs: Map<string, Subscription>;
}

/**
 * The others in the room and their tracks, as the gateway's join answer,
 * notifications and newConsumer requests describe them. It outlives sessions:
 * a rejoin keeps the peers (resynchronised by the new join answer) while their
 * tracks, tied to the old session's transport, go and come back as new consumers.
 */
export class RemoteRoster {
  private readonly peerStates = new Map<string, PeerState>();
  /** Peers subscribe()d with autoSubscribe off: their tracks are received as they arrive. */
  private readonly wantedPeers = new Set<string>();

  constructor(
    private readonly options: {
      autoSubscribe: boolean;
      /** The RoomClient's emit. */
      emit: (...event: EventArgs<RosterEvents>) => void;
      /** The current session's socket, for pausing and resuming consumers. */
      socket: () => ProtooSocket | undefined;
    },
  ) {}

  /** The announced peers (a peer known only from a consumer is not yet one). */
  get peers(): RemotePeer[] {
    return [...this.peerStates.values()].filter((p) => p.announced).map((p) => p.info);
  }

  /** The join answer: peers gone while we were away leave; new ones join; known ones stay (their tracks come back as new consumers). */
  sync(peers: PeerInfo[]): void {
    const present = new Set(peers.map((p) => p.id));
    for (const state of [...this.peerStates.values()]) if (!present.has(state.info.id)) this.dropPeer(state);
    for (const peer of peers) this.upsertPeer(peer);
  }

  /** The roster's share of the gateway's notifications; the others are ignored. */
  onNotification(n: ServerNotification): void {
    switch (n.method) {
      case 'newPeer':
        this.upsertPeer(n.data);
        break;
      case 'peerClosed': {
        const state = this.peerStates.get(n.data.peerId);
        if (state) this.dropPeer(state);
        break;
      }
      case 'peerDisplayNameChanged': {
        const state = this.peerStates.get(n.data.peerId);
        if (state) {
          state.info.displayName = n.data.displayName;
          if (state.announced) this.options.emit('peerUpdated', state.info);
        }
        break;
      }
      case 'consumerClosed': {
        const found = this.findSub(n.data.consumerId);
        if (found) this.removeTrack(...found);
        break;
      }
      case 'consumerPaused':
      case 'consumerResumed': {
        const found = this.findSub(n.data.consumerId);
        if (!found) break;
        const [state, sub] = found;
        sub.info.muted = n.method === 'consumerPaused';
        if (state.announced) this.options.emit(sub.info.muted ? 'trackMuted' : 'trackUnmuted', sub.info, state.info);
        break;
      }
      default:
        break;
    }
  }

  /** The gateway's newConsumer request: receives the track on `recv` (paused at once unless wanted). */
  async addConsumer(recv: ms.Transport, socket: ProtooSocket, d: ServerRequests['newConsumer']): Promise<void> {
    const consumer = await recv.consume({
      id: d.id,
      producerId: d.producerId,
      kind: d.kind,
      rtpParameters: d.rtpParameters as ms.RtpParameters,
      // Same stream id for a peer's microphone and camera: the browser keeps them in lip sync.
      streamId: `${d.peerId}-${d.appData.source === 'screen' ? 'screen' : 'av'}`,
      appData: { ...d.appData, peerId: d.peerId },
    });
    const source = d.appData.source;
    const subscribed = this.options.autoSubscribe || this.wantedPeers.has(d.peerId);
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
        socket.request('pauseConsumer', { consumerId: consumer.id }).catch(() => undefined);
      });
    }
    this.announceTrack(state, sub);
  }

  /** Receives a peer's tracks of the given kinds, now and (all kinds) as they arrive. */
  async subscribe(peerId: string, kinds: ('audio' | 'video')[]): Promise<void> {
    this.wantedPeers.add(peerId);
    const state = this.peerStates.get(peerId);
    if (!state) return;
    await Promise.all(
      [...state.subs.values()].filter((s) => !s.info.subscribed && kinds.includes(s.info.kind)).map((s) => this.setSubscribed(state, s, true)),
    );
  }

  /** Stops receiving a peer's tracks of the given kinds; with both kinds, its new tracks are not received either. */
  async unsubscribe(peerId: string, kinds: ('audio' | 'video')[]): Promise<void> {
    if (kinds.length === 2) this.wantedPeers.delete(peerId);
    const state = this.peerStates.get(peerId);
    if (!state) return;
    await Promise.all(
      [...state.subs.values()].filter((s) => s.info.subscribed && kinds.includes(s.info.kind)).map((s) => this.setSubscribed(state, s, false)),
    );
  }

  /** The session is gone: every remote track goes (trackRemoved, trackUnavailable); the peers stay for a rejoin. */
  clearTracks(): void {
    for (const state of this.peerStates.values()) for (const sub of [...state.subs.values()]) this.removeTrack(state, sub);
  }

  /** The room is left or lost for good: every peer leaves, after its tracks. */
  close(): void {
    for (const state of [...this.peerStates.values()]) this.dropPeer(state);
  }

  private upsertPeer(info: PeerInfo): void {
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
      this.options.emit('peerJoined', state.info);
      for (const sub of state.subs.values()) this.announceTrack(state, sub);
    }
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

  private announceTrack(state: PeerState, sub: Subscription): void {
    if (!state.announced) return;
    this.options.emit('trackAvailable', sub.info, state.info);
    if (sub.info.subscribed) this.options.emit('trackAdded', sub.info, state.info);
  }

  private removeTrack(state: PeerState, sub: Subscription): void {
    state.subs.delete(sub.info.id);
    state.info.tracks = state.info.tracks.filter((t) => t !== sub.info);
    if (!sub.consumer.closed) sub.consumer.close();
    if (!state.announced) return;
    if (sub.info.subscribed) this.options.emit('trackRemoved', sub.info, state.info);
    this.options.emit('trackUnavailable', sub.info, state.info);
  }

  private dropPeer(state: PeerState): void {
    for (const sub of [...state.subs.values()]) this.removeTrack(state, sub);
    this.peerStates.delete(state.info.id);
    if (state.announced) this.options.emit('peerLeft', state.info);
  }

  private findSub(consumerId: string): [PeerState, Subscription] | undefined {
    for (const state of this.peerStates.values()) {
      const sub = state.subs.get(consumerId);
      if (sub) return [state, sub];
    }
    return undefined;
  }

  private async setSubscribed(state: PeerState, sub: Subscription, subscribed: boolean): Promise<void> {
    const socket = this.options.socket();
    if (!socket) return;
    await socket.request(subscribed ? 'resumeConsumer' : 'pauseConsumer', { consumerId: sub.consumer.id });
    if (subscribed) sub.consumer.resume();
    else sub.consumer.pause();
    sub.info.subscribed = subscribed;
    if (state.announced) this.options.emit(subscribed ? 'trackAdded' : 'trackRemoved', sub.info, state.info);
  }
}
