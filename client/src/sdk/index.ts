/**
 * mediasoup-signal browser SDK: join a room with a token from your app
 * server, publish microphone / camera (simulcast) / screen, receive the
 * others, and rejoin by itself when the network or the media agent is lost.
 */
import { RoomClient, type RoomClientOptions } from './client.js';

export { RoomClient } from './client.js';
export { Session, type ServiceCallOptions, type PushEvent, type SessionEvents, type SessionOptions, type SessionState } from './session.js';
export { measureAgentRtts } from './agent-rtt.js';
export type {
  ActiveSpeaker,
  CameraOptions,
  ConnectionState,
  LocalTrack,
  MicrophoneOptions,
  RemotePeer,
  RemoteTrack,
  RoomClientEvents,
  RoomClientOptions,
  Source,
} from './client.js';
export { SignalError, sdkErrorCodes, type SdkErrorCode, type ServerErrorCode, type SignalErrorCode } from './errors.js';
export type { ErrorCode } from '../../../src/protocol/error-codes.js';
export { CLOSE_CODES, CLOSE_REASONS, type ClientResponses, type Ending } from './protoo.js';
export { decodeToken, type Permissions, type TokenInfo } from './token.js';
export type { AgentProbes, ClientMethod, ClientRequest } from '../../../src/protocol/signaling.js';
export type { PeerInfo, ServerNotification, ServerNotifications, ServerRequests } from '../../../src/protocol/notifications.js';

export const version = '0.1.0';

/** Connects with a token (signaling + codecs); call join() on the result to enter the room. */
export async function connect(options: RoomClientOptions): Promise<RoomClient> {
  const client = new RoomClient(options);
  await client.connect();
  return client;
}
