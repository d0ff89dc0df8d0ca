import type { RoomRecord, ServiceRecord } from '../store/store.js';

/** A room as Licode's Nuve shows it (`_id` last, optional fields only when set), plus `eapolicy` and `group`. */
export function roomView(room: RoomRecord): Record<string, unknown> {
  return {
    name: room.name,
    ...(room.p2p ? { p2p: true } : {}),
    ...(room.data !== undefined ? { data: room.data } : {}),
    ...(room.mediaConfiguration !== null ? { mediaConfiguration: room.mediaConfiguration } : {}),
    eapolicy: room.eapolicy,
    ...(room.group !== undefined ? { group: room.group } : {}),
    _id: room.id,
  };
}

export function serviceView(service: ServiceRecord, rooms: RoomRecord[]): Record<string, unknown> {
  return { name: service.name, key: service.key, rooms: rooms.map(roomView), _id: service.id };
}
