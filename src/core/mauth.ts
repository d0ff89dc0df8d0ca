import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Licode's MAuth scheme, kept byte-compatible with its Nuve clients:
 * `MAuth realm=...,mauth_signature_method=HMAC_SHA1,[mauth_username=..,mauth_role=..,]
 * mauth_serviceid=..,mauth_cnonce=..,mauth_timestamp=..,mauth_signature=..`, where the
 * signature is base64 of the lowercase-hex HMAC-SHA1 (service key) of
 * `timestamp,cnonce[,username,role]`.
 */
export interface MAuthParams {
  serviceId: string;
  cnonce: string;
  timestamp: string;
  signature: string;
  signatureMethod: string;
  username?: string;
  role?: string;
}

export const MAUTH_REALM = 'MAuth realm="mediasoup-signal"';

/**
 * Returns undefined when the header is not an MAuth header with every required field.
 * Fields are `name=value` separated by commas (value up to the next comma, `=` padding kept);
 * a `mauth_` prefix is dropped from names, the last of a repeated field wins. Parsed in one
 * pass without intermediate arrays: it runs on every API request.
 */
export function parseMAuthHeader(header: string | undefined): MAuthParams | undefined {
  if (!header || header.length > 4096 || !header.startsWith('MAuth ')) return undefined;
  let serviceId: string | undefined;
  let cnonce: string | undefined;
  let timestamp: string | undefined;
  let signature: string | undefined;
  let signatureMethod: string | undefined;
  let username: string | undefined;
  let role: string | undefined;
  for (let pos = 'MAuth '.length; pos <= header.length; ) {
    let end = header.indexOf(',', pos);
    if (end < 0) end = header.length;
    const eq = header.indexOf('=', pos);
    if (eq <= pos || eq >= end) return undefined;
    let name = header.slice(pos, eq).trim();
    if (name.startsWith('mauth_')) name = name.slice('mauth_'.length);
    const value = header.slice(eq + 1, end);
    switch (name) {
      case 'serviceid':
        serviceId = value;
        break;
      case 'cnonce':
        cnonce = value;
        break;
      case 'timestamp':
        timestamp = value;
        break;
      case 'signature':
        signature = value;
        break;
      case 'signature_method':
        signatureMethod = value;
        break;
      case 'username':
        username = value;
        break;
      case 'role':
        role = value;
        break;
    }
    pos = end + 1;
  }
  if (!serviceId || !cnonce || !timestamp || !signature || !signatureMethod) return undefined;
  return {
    serviceId,
    cnonce,
    timestamp,
    signature,
    signatureMethod,
    ...(username !== undefined && role !== undefined ? { username, role } : {}),
  };
}

export function mauthSignature(key: string, parts: readonly string[]): string {
  const hex = createHmac('sha1', key).update(parts.join(',')).digest('hex');
  return Buffer.from(hex).toString('base64');
}

export function verifyMAuthSignature(params: MAuthParams, key: string): boolean {
  const parts = [params.timestamp, params.cnonce];
  if (params.username !== undefined && params.role !== undefined) parts.push(params.username, params.role);
  const expected = Buffer.from(mauthSignature(key, parts));
  const given = Buffer.from(params.signature);
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** Builds a header as Licode's N.API does; used by tests, benchmarks and the playground. */
export function buildMAuthHeader(opts: {
  serviceId: string;
  key: string;
  username?: string;
  role?: string;
  timestamp?: number;
  cnonce?: string;
}): string {
  const timestamp = String(opts.timestamp ?? Date.now());
  const cnonce = opts.cnonce ?? String(Math.floor(Math.random() * 99999));
  const parts = [timestamp, cnonce];
  let header = 'MAuth realm=http://marte3.dit.upm.es,mauth_signature_method=HMAC_SHA1';
  if (opts.username && opts.role) {
    header += `,mauth_username=${opts.username},mauth_role=${opts.role}`;
    parts.push(opts.username, opts.role);
  }
  return `${header},mauth_serviceid=${opts.serviceId},mauth_cnonce=${cnonce},mauth_timestamp=${timestamp},mauth_signature=${mauthSignature(opts.key, parts)}`;
}
