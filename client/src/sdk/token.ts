import { type Permissions, grantedPermissions } from '../../../src/protocol/permissions.js';
import { SignalError } from './errors.js';

export type { Permissions };

/** What the SDK reads from a token (base64 JSON signed by Nuve); the gateway verifies it, the SDK only routes by it. */
export interface TokenInfo {
  gatewayUrl: string;
  roomId: string;
  userName: string;
  role: string;
  /** What the token lets its holder do (the gateway enforces them). */
  permissions: Permissions;
  expiresAt?: number;
}

/** The token's permissions, if it carries them (tokens of older Nuves do not). */
function permissionsOf(value: unknown): Permissions | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const p = value as Partial<Record<keyof Permissions, unknown>>;
  return { publish: p.publish === true, subscribe: p.subscribe === true, publishData: p.publishData === true, record: p.record === true };
}

export function decodeToken(token: string): TokenInfo {
  let claims: Record<string, unknown>;
  try {
    const binary = atob(token.trim());
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    claims = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
  } catch {
    throw new SignalError('TOKEN_INVALID', 'the token is not base64-encoded JSON');
  }
  const { gatewayUrl, roomId, userName, role, expiresAt } = claims;
  if (typeof gatewayUrl !== 'string' || !/^wss?:\/\//.test(gatewayUrl)) {
    throw new SignalError('TOKEN_INVALID', 'the token carries no gatewayUrl');
  }
  const roleName = typeof role === 'string' ? role : 'presenter';
  return {
    gatewayUrl,
    roomId: typeof roomId === 'string' ? roomId : '',
    userName: typeof userName === 'string' ? userName : '',
    role: roleName,
    permissions: grantedPermissions({ role: roleName, permissions: permissionsOf(claims.permissions) }),
    ...(typeof expiresAt === 'number' ? { expiresAt } : {}),
  };
}

/** The gateway's WebSocket URL for a token (and a stable peer id, so a rejoin replaces the old peer). */
export function socketUrl(info: TokenInfo, token: string, peerId: string): string {
  const base = info.gatewayUrl.replace(/\/+$/, '');
  return `${base}/?token=${encodeURIComponent(token)}&peerId=${encodeURIComponent(peerId)}`;
}
