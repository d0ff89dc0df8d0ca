import { createHmac, timingSafeEqual } from 'node:crypto';
import { AppError } from './errors.js';

/**
 * Webhook signatures, shared by Nuve (signing) and the server SDK (verifying). The signed text is
 * `<timestamp>.<body>`: the timestamp (Unix seconds, `mss-webhook-timestamp`) is signed with the
 * body so a captured delivery cannot be replayed later with a fresh one. The signature is
 * `v1=<hex HMAC-SHA256 with the tenant's key>` (`mss-webhook-signature`); the version prefix lets a
 * later scheme be added beside it.
 */
export const WEBHOOK_HEADERS = {
  id: 'mss-webhook-id',
  timestamp: 'mss-webhook-timestamp',
  signature: 'mss-webhook-signature',
} as const;

export function signWebhook(key: string, timestampSec: number, body: string): string {
  return `v1=${createHmac('sha256', key).update(`${timestampSec}.${body}`).digest('hex')}`;
}

export type HeaderBag = Headers | Record<string, string | string[] | undefined>;

function header(headers: HeaderBag, name: string): string | undefined {
  if (typeof (headers as Headers).get === 'function') return (headers as Headers).get(name) ?? undefined;
  const bag = headers as Record<string, string | string[] | undefined>;
  const found = Object.keys(bag).find((k) => k.toLowerCase() === name);
  const value = found === undefined ? undefined : bag[found];
  return Array.isArray(value) ? value[0] : value;
}

export interface VerifyOptions {
  /** How far the timestamp may be from now, either way (default 300 s). */
  toleranceSec?: number;
  /** Epoch milliseconds taken as now (tests). */
  now?: number;
}

/**
 * Checks a delivery's signature (constant time) and timestamp; returns the raw body's text.
 * Refuses with WEBHOOK_SIGNATURE_INVALID (missing or wrong signature) or WEBHOOK_TIMESTAMP_STALE
 * (outside the tolerance: an old delivery replayed). Within the tolerance, a replay is the same
 * event id again, which receivers deduplicate.
 */
export function verifyWebhookSignature(body: string | Uint8Array, headers: HeaderBag, key: string, options: VerifyOptions = {}): string {
  const text = typeof body === 'string' ? body : Buffer.from(body).toString('utf8');
  const timestamp = header(headers, WEBHOOK_HEADERS.timestamp);
  const signature = header(headers, WEBHOOK_HEADERS.signature);
  if (!timestamp || !/^\d{1,12}$/.test(timestamp) || !signature) {
    throw new AppError('WEBHOOK_SIGNATURE_INVALID', 'missing or malformed webhook signature headers');
  }
  const expected = Buffer.from(signWebhook(key, Number(timestamp), text));
  const given = Buffer.from(signature);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new AppError('WEBHOOK_SIGNATURE_INVALID');
  const toleranceSec = options.toleranceSec ?? 300;
  if (Math.abs((options.now ?? Date.now()) / 1000 - Number(timestamp)) > toleranceSec) throw new AppError('WEBHOOK_TIMESTAMP_STALE');
  return text;
}
