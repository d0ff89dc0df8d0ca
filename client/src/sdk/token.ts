import { SignalError } from './errors.js';

/** What the SDK reads from a token (base64 JSON signed by Nuve); the gateway verifies it, the SDK only routes by it. */
export interface TokenInfo {
  gatewayUrl: string;
  roomId: string;
  userName: string;
  role: 'presenter' | 'viewer';
  expiresAt?: number;
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
  return {
    gatewayUrl,
    roomId: typeof roomId === 'string' ? roomId : '',
    userName: typeof userName === 'string' ? userName : '',
    role: role === 'viewer' ? 'viewer' : 'presenter',
    ...(typeof expiresAt === 'number' ? { expiresAt } : {}),
  };
}

/** The gateway's WebSocket URL for a token (and a stable peer id, so a rejoin replaces the old peer). */
export function socketUrl(info: TokenInfo, token: string, peerId: string): string {
  const base = info.gatewayUrl.replace(/\/+$/, '');
  return `${base}/?token=${encodeURIComponent(token)}&peerId=${encodeURIComponent(peerId)}`;
}
