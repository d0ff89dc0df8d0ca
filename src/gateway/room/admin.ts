import { AppError } from '../../core/errors.js';
import type { ParticipantChanges, ParticipantView, RoomData } from '../../core/subjects.js';
import type { Peer } from '../peer.js';
import type { Room } from '../room.js';

/**
 * The app's room API (Nuve's participants routes, over `gateway.<id>.rpc`): what it sees of a room's
 * participants and what it changes. Every change reaches the peers as a notification and the
 * tenant's webhook as an event.
 */
export function participantView(peer: Peer): ParticipantView {
  const { publish, subscribe, publishData } = peer.permissions;
  return {
    id: peer.id,
    identity: peer.userName,
    name: peer.displayName,
    role: peer.role,
    joined: peer.joined,
    ...(peer.metadata !== undefined && { metadata: peer.metadata }),
    permissions: { publish, subscribe, publishData },
    tracks: [...peer.producers].map(([id, p]) => ({ id, kind: p.kind, muted: p.paused === true })),
  };
}

function participant(room: Room | undefined, peerId: string): Peer {
  const peer = room?.peers.get(peerId);
  if (!room || !peer || peer.closed) throw new AppError('PARTICIPANT_NOT_FOUND');
  return peer;
}

export function listParticipants(room: Room | undefined): ParticipantView[] {
  return room ? [...room.peers.values()].filter((p) => !p.closed).map(participantView) : [];
}

/** Name, metadata and permissions of a connected participant; revoking `publish` closes its tracks. */
export async function updateParticipant(room: Room | undefined, peerId: string, changes: ParticipantChanges): Promise<ParticipantView> {
  const peer = participant(room, peerId);
  if (changes.name !== undefined) peer.displayName = changes.name;
  if (changes.metadata !== undefined) peer.metadata = changes.metadata;
  if (changes.permissions) Object.assign(peer.permissions, changes.permissions);
  if (changes.permissions?.publish === false) {
    await Promise.all([...peer.producers.keys()].map((id) => room!.closeProducer(peer, id, 'permission revoked')));
  }
  const view = participantView(peer);
  const notice = { peerId: peer.id, displayName: view.name, permissions: view.permissions, ...(view.metadata !== undefined && { metadata: view.metadata }) };
  // Itself too: its own permissions or name changed under it.
  for (const other of room!.joinedPeers()) other.notify('participantUpdated', notice);
  if (!room!.joinedPeers().includes(peer)) peer.notify('participantUpdated', notice);
  room!.report('participant_metadata_changed', peer, view.metadata !== undefined ? { metadata: view.metadata } : {});
  return view;
}

/** Pauses (mute) or resumes (unmute) a participant's track on the server; its publisher is told so its client follows. */
export async function setTrackMuted(room: Room | undefined, peerId: string, trackId: string, muted: boolean): Promise<ParticipantView> {
  const peer = participant(room, peerId);
  if (!peer.producers.has(trackId)) throw new AppError('TRACK_NOT_FOUND');
  await room!.setProducerPaused(peer, trackId, muted);
  peer.notify('trackMuted', { producerId: trackId, muted });
  return participantView(peer);
}

/** Data to every joined participant, or to those named (unknown names refused before anyone gets it); answers how many got it. */
export function sendData(room: Room | undefined, data: RoomData): number {
  const recipients = data.participants ? data.participants.map((id) => participant(room, id)) : (room?.joinedPeers() ?? []);
  for (const peer of recipients) peer.notify('roomData', { topic: data.topic, payload: data.payload });
  return recipients.length;
}

export function setRoomMetadata(room: Room | undefined, metadata: unknown): void {
  for (const peer of room?.joinedPeers() ?? []) peer.notify('roomMetadataChanged', { metadata });
}
