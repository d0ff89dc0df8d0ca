import { AppError, isAppError } from '../../core/errors.js';
import { type GatewayRpc, subjects } from '../../core/subjects.js';
import type { NuveContext } from '../context.js';
import type { RoomRecord } from '../store/store.js';

const GATEWAY_RPC_TIMEOUT_MS = 3000;

/**
 * Asks the room's gateway (the room is live only there). Undefined when no registered gateway hosts
 * it; GATEWAY_UNAVAILABLE when its gateway does not answer; the gateway's own refusal otherwise.
 */
export async function askGateway<T>(ctx: NuveContext, room: RoomRecord, rpc: GatewayRpc): Promise<T | undefined> {
  if (room.gatewayId === null || !ctx.registry.get(room.gatewayId)) return undefined;
  try {
    return await ctx.bus.request<T>(subjects.gatewayRpc(room.gatewayId), rpc, { timeoutMs: GATEWAY_RPC_TIMEOUT_MS });
  } catch (err) {
    if (isAppError(err) && err.code.startsWith('BUS_')) throw new AppError('GATEWAY_UNAVAILABLE');
    throw err;
  }
}
