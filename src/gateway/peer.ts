import { EventEmitter } from 'node:events';
import { type Permissions, grantedPermissions } from '../protocol/permissions.js';
import type { TokenGrant } from '../core/subjects.js';
import type { RtpCapabilities } from '../protocol/media-parameters.js';
import type { ClientRequest, PeerInfo, ServerNotifications } from '../protocol/signaling.js';
import type { ClientConnection } from './edge/connection.js';
import type { ClientDistance, Rtts } from './placement.js';

/** What a peer's room and gateway use of its WebSocket session (a ClientConnection; a stand-in in unit tests). */
export type PeerChannel = Pick<ClientConnection, 'notify' | 'request' | 'end'>;

/** The media objects a peer holds on its agent, each capped per peer. */
export type PeerObjectKind = 'transports' | 'producers' | 'consumers' | 'dataProducers' | 'dataConsumers';

interface PeerEvents {
  /** The peer left, once, for `reason` (leave, disconnected, kicked, replaced, media agent lost, …). */
  close: [reason: string];
}

/**
 * A participant of a room on this gateway: a WebSocket client or a
 * broadcaster (plain RTP, driven over HTTP, no connection). It holds what the
 * gateway needs to orchestrate; the media objects themselves live on the agent.
 * Whoever ends it calls `close()`; its room observes `close` and takes its
 * media down, as a mediasoup router does when one of its transports closes.
 */
export class Peer extends EventEmitter<PeerEvents> {
  displayName: string;
  device: Record<string, unknown> = {};
  joined = false;
  rtpCapabilities?: RtpCapabilities;
  sctpCapabilities?: ClientRequest<'join'>['sctpCapabilities'];
  /** transport id → whether it was created for consuming, and whether its remote end was given (connect). */
  readonly transports = new Map<string, { consuming: boolean; connected: boolean }>();
  /** producer id → its kind, and whether it is paused (by its client or by the app's room API). */
  readonly producers = new Map<string, { kind: 'audio' | 'video'; paused?: boolean }>();
  /** What the app attached to this participant through Nuve's room API. */
  metadata?: unknown;
  readonly dataProducers = new Map<string, { label: string; protocol: string }>();
  /** consumer id → the producer it receives. */
  readonly consumers = new Map<string, string>();
  readonly dataConsumers = new Set<string>();
  /** Creations on the agent not answered yet, counted against the peer's limits with what it holds. */
  readonly creating: Record<PeerObjectKind, number> = { transports: 0, producers: 0, consumers: 0, dataProducers: 0, dataConsumers: 0 };
  closed = false;
  /** The agent carrying this peer's media, from the moment it is chosen. */
  agentId?: string;
  /** Placement in progress or done (the first request needing media starts it). */
  placement?: Promise<string>;
  /** TTL-BEST: the client's own round-trip times, if it reported them before being placed. */
  reportedRtts?: Rtts;
  /** TTL-BEST: the agents' probes of this client, started at connection. */
  distance?: ClientDistance;
  /** What its token lets it do: checked on every request that needs it (never its role's name). */
  readonly permissions: Permissions;

  constructor(
    readonly id: string,
    /** What its token granted: room, user, role. */
    readonly grant: TokenGrant,
    readonly connection: PeerChannel | undefined,
  ) {
    super();
    this.displayName = grant.userName;
    // Its own copy: the app may change a connected participant's permissions (the defaults are shared).
    this.permissions = { ...grantedPermissions(grant) };
  }

  get userName(): string {
    return this.grant.userName;
  }

  get role(): TokenGrant['role'] {
    return this.grant.role;
  }

  get info(): PeerInfo {
    return { id: this.id, displayName: this.displayName, device: this.device, role: this.role };
  }

  get consumingTransportId(): string | undefined {
    for (const [id, t] of this.transports) if (t.consuming) return id;
    return undefined;
  }

  /** `held`: may wait for the peer's next frame (ClientConnection.notify). */
  notify<M extends keyof ServerNotifications>(method: M, data: ServerNotifications[M], held = false): void {
    this.connection?.notify(method, data, held);
  }

  /**
   * Ends the peer for `reason`, once: observers learn it in the same turn, so
   * its room has let go of it (and told the others) before this returns. The
   * connection is its owner's to end, with the close code only it knows.
   */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.emit('close', reason);
  }
}
