import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { Bus, Subscription } from '../core/bus/bus.js';
import { AppError, describeIssues, isAppError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import {
  MAX_ACK_IDS,
  MAX_REFRESH_SESSIONS,
  type PushAckResult,
  type PushDeliverResult,
  type PushDelivery,
  type PushOnlineResult,
  type PushRestorePage,
  pushDeliverSchema,
  pushIdSchema,
  pushSubjects,
} from '../core/push-protocol.js';
import { type Channel, type ChannelContext, type ChannelHandler, requireScope } from './edge/channel.js';
import type { ClientConnection } from './edge/connection.js';
import type { Session } from './edge/session.js';

/** The client's acknowledgement: the ids of safe messages it has (delivery is at least once; it acknowledges copies too). */
const pushAckRequestSchema = z.object({ ids: z.array(pushIdSchema).min(1).max(MAX_ACK_IDS) }).strict();

const ONLINE_TIMEOUT_MS = 5000;
/** Notifications held for one connection while its restore is read; past it they count as not delivered there. */
const MAX_HELD = 10_000;

interface PushConnection {
  connection: ClientConnection;
  session: Session;
  /** Until its restore is sent: notifications arriving meanwhile, sent after the restored ones. */
  held?: PushDelivery[];
}

/**
 * The gateway's side of push: a channel of the client edge for sessions with
 * the scope `push`. Each such connection is registered online with the push
 * role (which answers with the messages the user missed), its location kept
 * alive by a refresh every third of `push.locationTtlMs`, and reported gone
 * when it closes. The push role's notifications for these connections
 * arrive on `gateway.<id>.push`; the client acknowledges with `pushAck`.
 */
export class PushSessions {
  private readonly connections = new Map<string, PushConnection>();
  private subscription?: Subscription;
  private refresher?: NodeJS.Timeout;

  constructor(
    private readonly bus: Bus,
    private readonly gatewayId: string,
    private readonly logger: Logger,
    private readonly locationTtlMs: number,
    /** A user's push session is registered and restored: it is online (the gateway reports it to the distributors). */
    private readonly onOnline?: (session: Session) => void,
  ) {}

  channel(): Channel {
    return {
      name: 'push',
      claims: (method) => method === 'pushAck',
      refusal: requireScope('push', 'push'),
      open: (context) => this.open(context),
    };
  }

  start(): void {
    this.subscription = this.bus.respond(pushSubjects.deliver(this.gatewayId), (payload) => this.deliver(payload));
    this.refresher = setInterval(() => this.refresh(), Math.floor(this.locationTtlMs / 3));
    this.refresher.unref();
  }

  stop(): void {
    clearInterval(this.refresher);
    this.subscription?.unsubscribe();
  }

  private async open({ connection, session }: ChannelContext): Promise<ChannelHandler> {
    const connectionId = randomUUID();
    const entry: PushConnection = { connection, session, held: [] };
    this.connections.set(connectionId, entry);
    const presence = { gatewayId: this.gatewayId, connectionId, serviceId: session.serviceId, userName: session.userName };
    connection.on('close', () => {
      this.connections.delete(connectionId);
      this.bus.publish(pushSubjects.offline, presence);
    });
    let restore: PushOnlineResult;
    try {
      restore = await this.bus.request<PushOnlineResult>(pushSubjects.online, presence, { timeoutMs: ONLINE_TIMEOUT_MS });
    } catch (err) {
      this.connections.delete(connectionId);
      this.logger.warn({ err, user: session.userName }, 'push session not registered');
      // The client reconnects (close table: rejoin) and is registered then.
      throw new AppError('PUSH_UNAVAILABLE', isAppError(err) ? err.message : 'the push service does not answer');
    }
    if (restore.dropped > 0) connection.notify('pushDropped', { count: restore.dropped });
    const restored = new Set<string>();
    let page: PushRestorePage = restore;
    for (;;) {
      for (const message of page.messages) {
        if (message.id) restored.add(message.id);
        connection.notify('push', message);
      }
      if (page.nextAfterSeq === undefined || connection.closed) break;
      try {
        page = await this.bus.request<PushRestorePage>(
          pushSubjects.restore,
          { serviceId: session.serviceId, userName: session.userName, afterSeq: page.nextAfterSeq },
          { timeoutMs: ONLINE_TIMEOUT_MS },
        );
      } catch (err) {
        this.connections.delete(connectionId);
        throw new AppError('PUSH_UNAVAILABLE', isAppError(err) ? err.message : 'the push service does not answer');
      }
    }
    // Sent after registration but read by the restore too: sent once.
    const held = entry.held ?? [];
    entry.held = undefined;
    for (const delivery of held) {
      if (!delivery.message?.id || !restored.has(delivery.message.id)) this.send(connection, delivery);
    }
    // Only now: a notification the user's coming online causes finds the session registered.
    this.onOnline?.(session);
    return {
      spanAttributes: { 'mss.user': session.userName },
      handle: (_method, data) => this.ack(session, data),
    };
  }

  private async ack(session: Session, data: unknown): Promise<PushAckResult> {
    const parsed = pushAckRequestSchema.safeParse(data ?? {});
    if (!parsed.success) throw new AppError('INVALID_REQUEST', `invalid pushAck: ${describeIssues(parsed.error.issues)}`);
    return this.bus.request<PushAckResult>(pushSubjects.ack, {
      serviceId: session.serviceId,
      userName: session.userName,
      ids: parsed.data.ids,
    });
  }

  /** The push role's notifications for connections of this gateway; answers those it does not have. */
  private deliver(payload: unknown): PushDeliverResult {
    const parsed = pushDeliverSchema.safeParse(payload);
    if (!parsed.success) throw new AppError('VALIDATION_FAILED', describeIssues(parsed.error.issues));
    const missing: string[] = [];
    for (const delivery of parsed.data.deliveries) {
      const entry = this.connections.get(delivery.connectionId);
      if (!entry || entry.connection.closed) missing.push(delivery.connectionId);
      else if (entry.held) {
        if (entry.held.length < MAX_HELD) entry.held.push(delivery);
        else missing.push(delivery.connectionId);
      }
      else this.send(entry.connection, delivery);
    }
    return { missing };
  }

  private send(connection: ClientConnection, delivery: PushDelivery): void {
    if (delivery.dropped) connection.notify('pushDropped', { count: delivery.dropped });
    if (delivery.message) connection.notify('push', delivery.message);
  }

  /** Tells the push role which sessions this gateway still has (in chunks the schema accepts). */
  private refresh(): void {
    const sessions = [...this.connections].map(([connectionId, { session }]) => ({
      connectionId,
      serviceId: session.serviceId,
      userName: session.userName,
    }));
    for (let i = 0; i < sessions.length; i += MAX_REFRESH_SESSIONS) {
      this.bus.publish(pushSubjects.refresh, { gatewayId: this.gatewayId, sessions: sessions.slice(i, i + MAX_REFRESH_SESSIONS) });
    }
  }
}
