import { randomBytes } from 'node:crypto';

/** 24 hex characters, the shape of Licode's (MongoDB) ids, so Licode clients see familiar ids. */
export function newId(): string {
  return randomBytes(12).toString('hex');
}

export const ID_PATTERN = /^[0-9a-f]{24}$/;
