import { createHmac } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';

/**
 * A Nuve client written the way Licode's N.API (nuve/nuveClient/src/N.API.js)
 * behaves on the wire, so tests see exactly what a Licode application sends:
 *
 * - `url` is concatenated with the path as-is (it must end with `/`); paths
 *   are `rooms`, `rooms/<id>/tokens`, `services/`, `rooms/<id>/users/` ...,
 *   segments not URL-encoded;
 * - `Authorization: MAuth realm=http://marte3.dit.upm.es,mauth_signature_method=HMAC_SHA1
 *   [,mauth_username=<u>,mauth_role=<r>],mauth_serviceid=..,mauth_cnonce=..,mauth_timestamp=..,mauth_signature=..`
 *   with timestamp in ms, cnonce an integer below 99999, signature
 *   base64(hex(HMAC-SHA1(key, "ts,cnonce[,username,role]"))), username
 *   lower-cased and stripped of accents first;
 * - a body only where Licode sends one, as JSON with `Content-Type: application/json`;
 * - status 100 or 200-205 → `callback(responseText)` (createRoom: JSON.parse'd);
 *   anything else → `callbackError(status + ' Error' + responseText, status)`.
 */
export interface NuveParams {
  service: string;
  key: string;
  url: string;
}

export type Callback = (result: any) => void;
export type ErrorCallback = (message: string, status: number) => void;

const SUCCESS = new Set([100, 200, 201, 202, 203, 204, 205]);

/** Licode's formatString: lower case, common accented letters folded. */
export function formatString(s: string): string {
  return s
    .toLowerCase()
    .replace(/[àáâãäå]/g, 'a')
    .replace(/æ/g, 'ae')
    .replace(/ç/g, 'c')
    .replace(/[èéêë]/g, 'e')
    .replace(/[ìíîï]/g, 'i')
    .replace(/ñ/g, 'n')
    .replace(/[òóôõö]/g, 'o')
    .replace(/œ/g, 'oe')
    .replace(/[ùúûűü]/g, 'u')
    .replace(/[ýÿ]/g, 'y');
}

export function calculateSignature(toSign: string, key: string): string {
  const hex = createHmac('sha1', key).update(toSign).digest('hex');
  return Buffer.from(hex).toString('base64');
}

export class LicodeNuveClient {
  params: NuveParams = { service: '', key: '', url: '' };
  /** What the client would have logged (Licode logs to the console). */
  readonly log: string[] = [];

  init(service: string, key: string, url: string): void {
    this.params = { service, key, url };
  }

  createRoom(name: string, callback: Callback, callbackError?: ErrorCallback, options?: Record<string, unknown>, params?: NuveParams): void {
    this.send((text) => callback(JSON.parse(text)), callbackError, 'POST', { name, options: options ?? {} }, 'rooms', params);
  }

  getRooms(callback: Callback, callbackError?: ErrorCallback, params?: NuveParams): void {
    this.send(callback, callbackError, 'GET', undefined, 'rooms', params);
  }

  getRoom(room: string, callback: Callback, callbackError?: ErrorCallback, params?: NuveParams): void {
    this.send(callback, callbackError, 'GET', undefined, `rooms/${room}`, params);
  }

  updateRoom(
    room: string,
    name: string | undefined,
    callback: Callback,
    callbackError?: ErrorCallback,
    options?: Record<string, unknown>,
    params?: NuveParams,
  ): void {
    this.send(callback, callbackError, 'PUT', { name, options }, `rooms/${room}`, params);
  }

  patchRoom(
    room: string,
    name: string | undefined,
    callback: Callback,
    callbackError?: ErrorCallback,
    options?: Record<string, unknown>,
    params?: NuveParams,
  ): void {
    this.send(callback, callbackError, 'PATCH', { name, options }, `rooms/${room}`, params);
  }

  deleteRoom(room: string, callback: Callback, callbackError?: ErrorCallback, params?: NuveParams): void {
    this.send(callback, callbackError, 'DELETE', undefined, `rooms/${room}`, params);
  }

  createToken(room: string, username: string, role: string, callback: Callback, callbackError?: ErrorCallback, params?: NuveParams): void {
    this.send(callback, callbackError, 'POST', undefined, `rooms/${room}/tokens`, params, username, role);
  }

  createService(name: string, key: string, callback: Callback, callbackError?: ErrorCallback, params?: NuveParams): void {
    this.send(callback, callbackError, 'POST', { name, key }, 'services/', params);
  }

  getServices(callback: Callback, callbackError?: ErrorCallback, params?: NuveParams): void {
    this.send(callback, callbackError, 'GET', undefined, 'services/', params);
  }

  getService(service: string, callback: Callback, callbackError?: ErrorCallback, params?: NuveParams): void {
    this.send(callback, callbackError, 'GET', undefined, `services/${service}`, params);
  }

  deleteService(service: string, callback: Callback, callbackError?: ErrorCallback, params?: NuveParams): void {
    this.send(callback, callbackError, 'DELETE', undefined, `services/${service}`, params);
  }

  getUsers(room: string, callback: Callback, callbackError?: ErrorCallback, params?: NuveParams): void {
    this.send(callback, callbackError, 'GET', undefined, `rooms/${room}/users/`, params);
  }

  getUser(room: string, user: string, callback: Callback, callbackError?: ErrorCallback, params?: NuveParams): void {
    this.send(callback, callbackError, 'GET', undefined, `rooms/${room}/users/${user}`, params);
  }

  deleteUser(room: string, user: string, callback: Callback, callbackError?: ErrorCallback, params?: NuveParams): void {
    this.send(callback, callbackError, 'DELETE', undefined, `rooms/${room}/users/${user}`, params);
  }

  /** The Authorization header exactly as N.API builds it. */
  static authorization(service: string, key: string, username?: string, role?: string): string {
    const timestamp = new Date().getTime();
    const cnounce = Math.floor(Math.random() * 99999);
    let toSign = `${timestamp},${cnounce}`;
    let header = 'MAuth realm=http://marte3.dit.upm.es,mauth_signature_method=HMAC_SHA1';
    if (username && role) {
      const formatted = formatString(username);
      header += `,mauth_username=${formatted},mauth_role=${role}`;
      toSign += `,${formatted},${role}`;
    }
    const signed = calculateSignature(toSign, key);
    header += `,mauth_serviceid=${service},mauth_cnonce=${cnounce},mauth_timestamp=${timestamp},mauth_signature=${signed}`;
    return header;
  }

  private send(
    callback: (text: string) => void,
    callbackError: ErrorCallback | undefined,
    method: string,
    body: unknown,
    path: string,
    params?: NuveParams,
    username?: string,
    role?: string,
  ): void {
    const { service, key, url: base } = params ?? this.params;
    if (service === '' || key === '') {
      this.log.push('ServiceID and Key are required!!');
      return;
    }
    const url = new URL(base + path);
    const headers: Record<string, string | number> = {
      Authorization: LicodeNuveClient.authorization(service, key, username, role),
    };
    let payload: string | undefined;
    if (body !== undefined) {
      payload = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = Buffer.byteLength(payload);
    } else if (method !== 'GET' && method !== 'DELETE') {
      headers['Content-Length'] = 0; // as XMLHttpRequest.send() with no data
    }
    const transport = url.protocol === 'https:' ? https : http;
    const req = transport.request(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        if (SUCCESS.has(status)) callback(text);
        else if (callbackError !== undefined) callbackError(`${status} Error${text}`, status);
      });
    });
    req.on('error', (err) => callbackError?.(`0 Error${err.message}`, 0));
    req.end(payload);
  }
}

/** Licode's global style: `N.API.init(...)`, `N.API.createRoom(...)`. */
export const N = { API: new LicodeNuveClient() };
