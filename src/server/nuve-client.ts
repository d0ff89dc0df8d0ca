import { randomBytes } from 'node:crypto';
import { AppError } from '../core/errors.js';
import { buildMAuthHeader } from '../core/mauth.js';
import type { RoomEventType } from '../core/room-events.js';
import type { SESSION_SCOPES } from '../protocol/permissions.js';
import type { PushMessage, PushSendResult } from '../core/push-protocol.js';
import type { EaPolicy, ParticipantChanges, ParticipantView, RoomData, RoomUser } from '../core/subjects.js';

export type { ParticipantChanges, ParticipantView, PushMessage, PushSendResult, RoomData };

export interface PushOptions {
  /** Any JSON value, at most Nuve's push.maxPayloadBytes serialised. */
  data: unknown;
  /** Stored until the client acknowledges it and restored on connect (default), or only to sessions online now. */
  safe?: boolean;
  /** Safe pushes: not delivered once this long has passed. */
  ttlSec?: number;
}

export interface NuveClientOptions {
  /** Nuve's base URL, e.g. http://127.0.0.1:3000. */
  url: string;
  serviceId: string;
  key: string;
  /** Per request (default 10 s). */
  timeoutMs?: number;
}

export interface RoomOptions {
  p2p?: boolean;
  data?: unknown;
  mediaConfiguration?: string;
  eapolicy?: EaPolicy;
  /** The room's group: its members hear of its calls when they come online. Null (update, patch) takes it out. */
  group?: string | null;
}

/** A room as Nuve answers it (Licode's shape). */
export interface Room {
  _id: string;
  name: string;
  p2p?: true;
  data?: unknown;
  mediaConfiguration?: string;
  eapolicy: EaPolicy;
  group?: string;
}

/** One page of a list; pass `next` as `after` for the following one (absent: this was the last). */
export interface Paged {
  next?: string;
}

export interface Service {
  _id: string;
  name: string;
  key: string;
  rooms: Room[];
}

export interface WebhookEndpoint {
  url: string;
  include?: RoomEventType[];
  exclude?: RoomEventType[];
}

export interface FailedWebhook {
  eventId: string;
  roomId: string;
  type: RoomEventType;
  createdAt: number;
  failedAt: number;
  attempts: number;
  lastError: string | null;
}

/**
 * Every route this client calls, as OpenAPI names it: a test checks each against Nuve's
 * `/openapi.json`, so the client cannot drift from the API.
 */
export const NUVE_CLIENT_ROUTES = [
  'POST /services',
  'GET /services',
  'GET /services/{service}',
  'DELETE /services/{service}',
  'POST /rooms',
  'GET /rooms',
  'GET /rooms/{room}',
  'PUT /rooms/{room}',
  'PATCH /rooms/{room}',
  'DELETE /rooms/{room}',
  'POST /rooms/{room}/tokens',
  'POST /sessions',
  'GET /rooms/{room}/users',
  'GET /rooms/{room}/users/{user}',
  'DELETE /rooms/{room}/users/{user}',
  'PUT /webhook',
  'GET /webhook',
  'DELETE /webhook',
  'GET /webhook/failed',
  'PUT /rooms/{room}/webhook',
  'GET /rooms/{room}/webhook',
  'DELETE /rooms/{room}/webhook',
  'GET /status',
  'GET /live/rooms',
  'GET /rooms/{room}/participants',
  'GET /rooms/{room}/participants/{participant}',
  'PATCH /rooms/{room}/participants/{participant}',
  'POST /rooms/{room}/participants/{participant}/tracks/{track}/mute',
  'POST /rooms/{room}/data',
  'POST /rooms/{room}/close',
  'GET /settings',
  'PATCH /settings',
  'POST /push/messages',
  'POST /push/users/{user}/messages',
  'GET /push/users/{user}/messages',
  'DELETE /push/users/{user}/messages/{id}',
  'POST /groups/{group}/members',
  'POST /groups/{group}/members/remove',
  'GET /groups/{group}/members',
  'GET /users/{user}/groups',
  'DELETE /groups/{group}',
  'POST /online',
] as const;
export type NuveRoute = (typeof NUVE_CLIENT_ROUTES)[number];

type Answer = 'json' | 'text' | 'none';

/**
 * A typed client for Nuve's REST API, signing every request with MAuth (the tenant's id and key).
 * A refusal rejects with a NuveError carrying Nuve's code (`ROOM_NOT_FOUND`, …) and status.
 */
export class NuveClient {
  private readonly base: string;

  constructor(private readonly options: NuveClientOptions) {
    this.base = options.url.replace(/\/+$/, '');
  }

  // ── Services (the superService only) ──
  async createService(name: string, key?: string): Promise<string> {
    return JSON.parse(await this.call<string>('POST /services', {}, { body: { name, ...(key !== undefined && { key }) }, answer: 'text' })) as string;
  }
  listServices(): Promise<Service[]> {
    return this.call('GET /services');
  }
  getService(id: string): Promise<Service> {
    return this.call('GET /services/{service}', { service: id });
  }
  async deleteService(id: string): Promise<void> {
    await this.call('DELETE /services/{service}', { service: id }, { answer: 'none' });
  }

  // ── Rooms ──
  createRoom(name: string, options?: RoomOptions): Promise<Room> {
    return this.call('POST /rooms', {}, { body: { name, ...(options && { options }) } });
  }
  listRooms(): Promise<Room[]> {
    return this.call('GET /rooms');
  }
  getRoom(id: string): Promise<Room> {
    return this.call('GET /rooms/{room}', { room: id });
  }
  /** Replaces the name, and the options given. */
  async updateRoom(id: string, name: string, options?: RoomOptions): Promise<void> {
    await this.call('PUT /rooms/{room}', { room: id }, { body: { name, ...(options && { options }) }, answer: 'none' });
  }
  /** Changes only what is given; object `data` is merged key by key. */
  async patchRoom(id: string, changes: { name?: string; options?: RoomOptions }): Promise<void> {
    await this.call('PATCH /rooms/{room}', { room: id }, { body: changes, answer: 'none' });
  }
  async deleteRoom(id: string): Promise<void> {
    await this.call('DELETE /rooms/{room}', { room: id }, { answer: 'none' });
  }

  // ── Tokens ──
  /** A one-time room token for `user` with `role` (one of Nuve's roles). */
  createToken(roomId: string, user: string, role: string): Promise<string> {
    return this.call('POST /rooms/{room}/tokens', { room: roomId }, { user: { username: user, role }, answer: 'text' });
  }
  async createSession(session: { user: string; scopes: (typeof SESSION_SCOPES)[number][]; room?: { id: string; role: string } }): Promise<string> {
    return (await this.call<{ token: string }>('POST /sessions', {}, { body: session })).token;
  }

  // ── Connected users ──
  listUsers(roomId: string): Promise<RoomUser[]> {
    return this.call('GET /rooms/{room}/users', { room: roomId });
  }
  getUser(roomId: string, user: string): Promise<RoomUser> {
    return this.call('GET /rooms/{room}/users/{user}', { room: roomId, user });
  }
  async deleteUser(roomId: string, user: string): Promise<void> {
    await this.call('DELETE /rooms/{room}/users/{user}', { room: roomId, user }, { answer: 'none' });
  }

  // ── Webhooks: the service's, or one room's instead ──
  setWebhook(endpoint: WebhookEndpoint, roomId?: string): Promise<WebhookEndpoint & { room?: string }> {
    return roomId === undefined
      ? this.call('PUT /webhook', {}, { body: endpoint })
      : this.call('PUT /rooms/{room}/webhook', { room: roomId }, { body: endpoint });
  }
  getWebhook(roomId?: string): Promise<WebhookEndpoint & { room?: string }> {
    return roomId === undefined ? this.call('GET /webhook') : this.call('GET /rooms/{room}/webhook', { room: roomId });
  }
  async deleteWebhook(roomId?: string): Promise<void> {
    if (roomId === undefined) await this.call('DELETE /webhook', {}, { answer: 'none' });
    else await this.call('DELETE /rooms/{room}/webhook', { room: roomId }, { answer: 'none' });
  }
  /** Events given up after the retention period, newest first. */
  failedWebhooks(limit = 100): Promise<FailedWebhook[]> {
    return this.call('GET /webhook/failed', {}, { query: { limit: String(limit) } });
  }

  // ── Room API: live rooms and their participants (peer ids) and tracks (producer ids) ──
  liveRooms(): Promise<{ id: string; name: string; participants: number; tracks: number }[]> {
    return this.call('GET /live/rooms');
  }
  listParticipants(roomId: string): Promise<ParticipantView[]> {
    return this.call('GET /rooms/{room}/participants', { room: roomId });
  }
  getParticipant(roomId: string, participant: string): Promise<ParticipantView> {
    return this.call('GET /rooms/{room}/participants/{participant}', { room: roomId, participant });
  }
  /** Name, metadata, permissions (publish, subscribe, publishData) of a connected participant; every peer is told. */
  updateParticipant(roomId: string, participant: string, changes: ParticipantChanges): Promise<ParticipantView> {
    return this.call('PATCH /rooms/{room}/participants/{participant}', { room: roomId, participant }, { body: changes });
  }
  /** Mutes (or, where Nuve allows it, unmutes) a published track; its publisher is told. */
  setTrackMuted(roomId: string, participant: string, track: string, muted: boolean): Promise<ParticipantView> {
    return this.call('POST /rooms/{room}/participants/{participant}/tracks/{track}/mute', { room: roomId, participant, track }, { body: { muted } });
  }
  /** Data with a topic to every joined participant, or to those named; answers how many got it. */
  async sendData(roomId: string, data: RoomData): Promise<number> {
    return (await this.call<{ delivered: number }>('POST /rooms/{room}/data', { room: roomId }, { body: data })).delivered;
  }
  /** Disconnects everyone; the room stays (deleteRoom removes it). */
  async closeRoom(roomId: string): Promise<void> {
    await this.call('POST /rooms/{room}/close', { room: roomId }, { answer: 'none' });
  }

  // ── This tenant's own settings ──
  settings(): Promise<{ allowRemoteUnmute: boolean }> {
    return this.call('GET /settings');
  }
  /** `allowRemoteUnmute`: whether this app's server may unmute its participants' tracks (setTrackMuted(…, false)). */
  updateSettings(changes: { allowRemoteUnmute?: boolean }): Promise<{ allowRemoteUnmute: boolean }> {
    return this.call('PATCH /settings', {}, { body: changes });
  }

  // ── Push: reach the service's users wherever they are connected ──
  /** One message to each user (at most 1,000); `offline` lists those no connection was reached for. */
  push(users: string[], message: PushOptions): Promise<PushSendResult> {
    return this.call('POST /push/messages', {}, { body: { users, ...message } });
  }
  pushToUser(user: string, message: PushOptions): Promise<PushSendResult> {
    return this.call('POST /push/users/{user}/messages', { user }, { body: message });
  }
  /** A user's unarrived safe messages, oldest first. */
  pendingPushes(user: string, limit = 100): Promise<PushMessage[]> {
    return this.call('GET /push/users/{user}/messages', { user }, { query: { limit: String(limit) } });
  }
  async cancelPush(user: string, id: string): Promise<void> {
    await this.call('DELETE /push/users/{user}/messages/{id}', { user, id }, { answer: 'none' });
  }

  // ── Groups: who hears of which rooms' calls ──
  /** Adds up to 1,000 users to a group (those already in it stay); answers how many were new. */
  async addGroupMembers(group: string, users: string[]): Promise<number> {
    return (await this.call<{ added: number }>('POST /groups/{group}/members', { group }, { body: { users } })).added;
  }
  /** Removes up to 1,000 users from a group; answers how many were in it. */
  async removeGroupMembers(group: string, users: string[]): Promise<number> {
    return (await this.call<{ removed: number }>('POST /groups/{group}/members/remove', { group }, { body: { users } })).removed;
  }
  groupMembers(group: string, page: { limit?: number; after?: string } = {}): Promise<{ members: { user: string; addedAt: number }[] } & Paged> {
    return this.call('GET /groups/{group}/members', { group }, { query: pageQuery(page) });
  }
  userGroups(user: string, page: { limit?: number; after?: string } = {}): Promise<{ groups: string[] } & Paged> {
    return this.call('GET /users/{user}/groups', { user }, { query: pageQuery(page) });
  }
  /** Removes its members and takes it off its rooms (which stay); GROUP_NOT_FOUND when it had neither. */
  deleteGroup(group: string): Promise<{ members: number; rooms: number }> {
    return this.call('DELETE /groups/{group}', { group });
  }

  // ── Online events: your own login service tells the platform who came online ──
  /**
   * These users (at most 1,000) came online: each gets, from a distributor, one push listing the calls
   * going on in its groups (if any). Answers each user's event id, which that push carries.
   */
  online(users: string[]): Promise<{ events: { user: string; id: string }[] }> {
    return this.call('POST /online', {}, { body: { users } });
  }

  /** The cluster's gateways and media agents with their load (the superService only). */
  status(): Promise<Record<string, unknown>> {
    return this.call('GET /status');
  }

  private async call<T>(
    route: NuveRoute,
    params: Record<string, string> = {},
    o: { body?: unknown; answer?: Answer; user?: { username: string; role: string }; query?: Record<string, string> } = {},
  ): Promise<T> {
    const [method, template] = route.split(' ') as [string, string];
    const path = template.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(params[name] ?? ''));
    const query = o.query ? `?${new URLSearchParams(o.query).toString()}` : '';
    const res = await fetch(`${this.base}${path}${query}`, {
      method,
      redirect: 'error',
      signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
      headers: {
        authorization: buildMAuthHeader({
          serviceId: this.options.serviceId,
          key: this.options.key,
          cnonce: randomBytes(12).toString('hex'),
          ...o.user,
        }),
        ...(o.body !== undefined && { 'content-type': 'application/json' }),
      },
      body: o.body === undefined ? undefined : JSON.stringify(o.body),
    });
    const text = await res.text();
    if (!res.ok) {
      let error: { code?: unknown; message?: unknown } = {};
      try {
        error = JSON.parse(text) as typeof error;
      } catch {
        // Not Nuve's JSON refusal (a proxy's page): reported by status below.
      }
      throw AppError.fromRemote(
        typeof error.code === 'string' ? error.code : 'INTERNAL',
        typeof error.message === 'string' ? error.message : `Nuve answered ${res.status}`,
        res.status,
      );
    }
    const answer = o.answer ?? 'json';
    return (answer === 'json' ? JSON.parse(text) : answer === 'text' ? text : undefined) as T;
  }
}

function pageQuery(page: { limit?: number; after?: string }): Record<string, string> {
  return { ...(page.limit !== undefined && { limit: String(page.limit) }), ...(page.after !== undefined && { after: page.after }) };
}
