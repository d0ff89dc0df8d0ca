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

/** Returns undefined when the header is not an MAuth header with every required field. */
export function parseMAuthHeader(header: string | undefined): MAuthParams | undefined {
  if (!header || header.length > 4096 || !header.startsWith('MAuth ')) return undefined;
  const fields = new Map<string, string>();
  for (const part of header.slice('MAuth '.length).split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) return undefined;
    const name = part.slice(0, eq).trim();
    fields.set(name.startsWith('mauth_') ? name.slice('mauth_'.length) : name, part.slice(eq + 1));
  }
  const serviceId = fields.get('serviceid');
  const cnonce = fields.get('cnonce');
  const timestamp = fields.get('timestamp');
  const signature = fields.get('signature');
  const signatureMethod = fields.get('signature_method');
  if (!serviceId || !cnonce || !timestamp || !signature || !signatureMethod) return undefined;
  const username = fields.get('username');
  const role = fields.get('role');
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
