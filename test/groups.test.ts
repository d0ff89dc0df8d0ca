import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { type GroupCallsResult, MAX_CALL_PARTICIPANTS, MAX_GROUP_CALLS, groupCallsSubjects } from '../src/core/group-calls-protocol.js';
import type { RoomEvent } from '../src/core/room-events.js';
import { subjects } from '../src/core/subjects.js';
import { NuveClient } from '../src/server/index.js';
import { type NuveHarness, type StoreKind, type TestService, startNuve, waitFor } from './helpers/nuve-harness.js';

/**
 * Groups at Nuve, on each store engine: the REST routes (through the server SDK and raw), and the
 * live presence kept from room events as a gateway sends them (`nuve.room.events` on the bus),
 * read back the way the distributor asks (`nuve.groups.calls`).
 */
for (const kind of ['sqlite', 'postgres'] as StoreKind[]) {
  describe(`groups on ${kind}`, () => {
    let h: NuveHarness;
    let a: TestService;
    let b: TestService;
    let sdkA: NuveClient;
    let sdkB: NuveClient;

    before(async () => {
      // Gateways silent 1.5 s are dropped: the crashed-gateway case below waits for that.
      h = await startNuve({ store: kind, nuve: { gatewayTimeoutMs: 1500 }, keepaliveMs: 300 });
      a = await h.createService('tenant-a');
      b = await h.createService('tenant-b');
      sdkA = new NuveClient({ url: h.url, serviceId: a.id, key: a.key });
      sdkB = new NuveClient({ url: h.url, serviceId: b.id, key: b.key });
    });
    after(async () => h.close());

    const calls = (service: TestService, userName: string) =>
      h.bus.request<GroupCallsResult>(groupCallsSubjects.forUser, { serviceId: service.id, userName });

    /** Sends events as gateway `gatewayId` does (times from `at` up, one ms apart unless given). */
    let clock = Date.now();
    function event(type: RoomEvent['type'], service: TestService, roomId: string, participant?: string, at = ++clock): RoomEvent {
      return {
        id: randomUUID(),
        type,
        at,
        serviceId: service.id,
        roomId,
        ...(participant !== undefined && { participant: { id: `peer-${participant}`, identity: participant, name: `Name ${participant}`, role: 'presenter' } }),
      };
    }
    const send = (events: RoomEvent[], gatewayId = 'gw-1') => h.bus.request(subjects.roomEvents, { gatewayId, events });

    test('members: add (idempotent, batch), list in pages, a user’s groups, remove, delete', async () => {
      assert.equal(await sdkA.addGroupMembers('team', ['ann', 'bob', 'cy', 'ann']), 3);
      assert.equal(await sdkA.addGroupMembers('team', ['ann', 'dee']), 1, 'ann was in already');
      assert.equal(await sdkA.addGroupMembers('other', ['ann']), 1);

      const first = await sdkA.groupMembers('team', { limit: 3 });
      assert.deepEqual(first.members.map((m) => m.user), ['ann', 'bob', 'cy']);
      assert.ok(first.members.every((m) => Math.abs(m.addedAt - Date.now()) < 60_000));
      assert.equal(first.next, 'cy');
      const second = await sdkA.groupMembers('team', { limit: 3, after: first.next! });
      assert.deepEqual(second.members.map((m) => m.user), ['dee']);
      assert.equal(second.next, undefined);
      assert.deepEqual(await sdkA.userGroups('ann'), { groups: ['other', 'team'] });
      assert.deepEqual(await sdkA.userGroups('ann', { limit: 1 }), { groups: ['other'], next: 'other' });
      assert.deepEqual(await sdkA.userGroups('nobody'), { groups: [] });

      assert.equal(await sdkA.removeGroupMembers('team', ['bob', 'zed']), 1, 'zed was never in');
      assert.equal(await sdkA.removeGroupMembers('team', ['bob']), 0);
      assert.deepEqual((await sdkA.groupMembers('team')).members.map((m) => m.user), ['ann', 'cy', 'dee']);

      const room = await sdkA.createRoom('team room', { group: 'team' });
      assert.equal(room.group, 'team');
      assert.deepEqual(await sdkA.deleteGroup('team'), { members: 3, rooms: 1 });
      assert.equal((await sdkA.getRoom(room._id)).group, undefined, 'the room stays, in no group');
      assert.deepEqual((await sdkA.groupMembers('team')).members, []);
      await assert.rejects(sdkA.deleteGroup('team'), { code: 'GROUP_NOT_FOUND', status: 404 });
      assert.deepEqual(await sdkA.userGroups('ann'), { groups: ['other'] });
    });

    test('a room’s group: set at creation, shown, changed and removed by PUT/PATCH; Licode’s options unchanged', async () => {
      const plain = await sdkA.createRoom('plain', { p2p: true, data: { x: 1 } });
      assert.deepEqual(Object.keys(plain), ['name', 'p2p', 'data', 'eapolicy', '_id'], 'no group key when there is none');
      const grouped = await sdkA.createRoom('grouped', { group: 'g1', data: 'd' });
      assert.deepEqual(Object.keys(grouped), ['name', 'data', 'eapolicy', 'group', '_id']);
      await sdkA.patchRoom(grouped._id, { options: { group: 'g2' } });
      assert.equal((await sdkA.getRoom(grouped._id)).group, 'g2');
      await sdkA.updateRoom(grouped._id, 'grouped', { data: 'e' });
      assert.equal((await sdkA.getRoom(grouped._id)).group, 'g2', 'PUT keeps the group when not given');
      await sdkA.patchRoom(grouped._id, { options: { group: null } });
      assert.equal((await sdkA.getRoom(grouped._id)).group, undefined);
      assert.equal((await sdkA.createRoom('null group', { group: null })).group, undefined);
      for (const bad of ['', 'a/b', 'x\u0001', 'g'.repeat(129), 'half \ud800', 7]) {
        const res = await h.call('POST', '/rooms', { service: a.id, body: { name: 'r', options: { group: bad } } });
        assert.equal(res.status, 400, JSON.stringify(bad));
        assert.equal(res.json.code, 'VALIDATION_FAILED');
      }
    });

    test('bad input gets stable codes: batch size, names, unknown keys, paging', async () => {
      const users = (n: number) => Array.from({ length: n }, (_, i) => `user-${i}`);
      const post = (path: string, body: unknown) => h.call('POST', path, { service: a.id, body });
      assert.equal((await post('/groups/big/members', { users: users(1000) })).json.added, 1000);
      assert.equal((await post('/groups/big/members/remove', { users: users(1000) })).json.removed, 1000);
      for (const [path, body] of [
        ['/groups/big/members', { users: users(1001) }],
        ['/groups/big/members/remove', { users: users(1001) }],
        ['/groups/big/members', { users: [] }],
        ['/groups/big/members', { users: ['ok', ''] }],
        ['/groups/big/members', { users: ['nul\u0000'] }],
        ['/groups/big/members', { users: ['x'.repeat(257)] }],
        ['/groups/big/members', { users: ['ok'], extra: 1 }],
        ['/groups/big/members', { users: 'ann' }],
        ['/groups/big/members', null],
        [`/groups/${'g'.repeat(129)}/members`, { users: ['ann'] }],
        ['/groups/a%2Fb/members', { users: ['ann'] }],
        ['/groups/a%01b/members', { users: ['ann'] }],
      ] as const) {
        const res = await post(path, body);
        assert.equal(res.status, 400, `${path} ${JSON.stringify(body)?.slice(0, 60)}: ${res.text}`);
        assert.equal(res.json.code, 'VALIDATION_FAILED');
      }
      for (const query of ['limit=0', 'limit=1001', 'limit=x', 'after=', 'other=1']) {
        const res = await h.call('GET', `/groups/big/members?${query}`, { service: a.id });
        assert.equal(res.status, 400, query);
        assert.equal(res.json.code, 'VALIDATION_FAILED');
      }
      assert.equal((await h.call('DELETE', '/groups/never-was', { service: a.id })).json.code, 'GROUP_NOT_FOUND');
      assert.equal((await h.call('GET', '/groups/big/members', { service: a.id, key: b.key })).json.code, 'AUTH_BAD_SIGNATURE');
    });

    test('tenants apart: another tenant’s group, members and room are invisible and untouchable', async () => {
      await sdkA.addGroupMembers('shared-name', ['ann', 'bob']);
      assert.deepEqual((await sdkB.groupMembers('shared-name')).members, []);
      assert.deepEqual(await sdkB.userGroups('ann'), { groups: [] });
      assert.equal(await sdkB.removeGroupMembers('shared-name', ['ann', 'bob']), 0);
      await assert.rejects(sdkB.deleteGroup('shared-name'), { code: 'GROUP_NOT_FOUND' });
      const roomA = await sdkA.createRoom('a room', { group: 'shared-name' });
      await assert.rejects(sdkB.patchRoom(roomA._id, { options: { group: 'mine' } }), { code: 'ROOM_NOT_FOUND' });
      // B's own group of the same name, with the same user: B's calls never list A's room.
      await sdkB.addGroupMembers('shared-name', ['ann']);
      assert.equal(await sdkB.addGroupMembers('shared-name', ['ann']), 0);
      await send([event('room_started', a, roomA._id), event('participant_joined', a, roomA._id, 'bob')]);
      assert.deepEqual((await calls(b, 'ann')).calls, []);
      assert.equal((await calls(b, 'ann')).groups, 1);
      assert.deepEqual((await calls(a, 'ann')).calls.map((c) => c.roomId), [roomA._id]);
      // An event naming B with A's room id (a room id is unique, but the tenant must match too) shows nothing at B.
      await send([event('participant_joined', b, roomA._id, 'eve')]);
      assert.deepEqual((await calls(b, 'ann')).calls, []);
      assert.deepEqual((await sdkA.groupMembers('shared-name')).members.map((m) => m.user), ['ann', 'bob']);
      await send([event('room_finished', a, roomA._id), event('room_finished', b, roomA._id)]);
    });

    test('calls: joined → listed with participants and times; left → gone; no group → 0; group without calls → []', async () => {
      await sdkA.addGroupMembers('friends', ['carol']);
      const roomId = (await sdkA.createRoom('friends call', { group: 'friends' }))._id;
      await sdkA.createRoom('friends idle', { group: 'friends' });
      assert.deepEqual(await calls(a, 'carol'), { groups: 1, calls: [] });
      assert.deepEqual(await calls(a, 'stranger'), { groups: 0, calls: [] });

      const started = event('room_started', a, roomId);
      const dan = event('participant_joined', a, roomId, 'dan');
      const eve = event('participant_joined', a, roomId, 'eve');
      await send([started, dan]);
      await send([eve]);
      assert.deepEqual(await calls(a, 'carol'), {
        groups: 1,
        calls: [
          {
            roomId,
            roomName: 'friends call',
            group: 'friends',
            since: started.at,
            participants: [
              { id: 'peer-dan', name: 'Name dan', since: dan.at },
              { id: 'peer-eve', name: 'Name eve', since: eve.at },
            ],
            participantCount: 2,
          },
        ],
      });
      // A display name change is followed.
      await send([{ ...event('participant_metadata_changed', a, roomId, 'eve'), participant: { id: 'peer-eve', identity: 'eve', name: 'Eve E.', role: 'presenter' } }]);
      assert.equal((await calls(a, 'carol')).calls[0]!.participants[1]!.name, 'Eve E.');
      await send([event('participant_left', a, roomId, 'dan')]);
      assert.deepEqual((await calls(a, 'carol')).calls[0]!.participants.map((p) => p.id), ['peer-eve']);
      await send([event('participant_connection_aborted', a, roomId, 'eve')]);
      assert.deepEqual(await calls(a, 'carol'), { groups: 1, calls: [] });
      await send([event('room_finished', a, roomId)]);
      assert.deepEqual(await calls(a, 'carol'), { groups: 1, calls: [] });
    });

    test('duplicated and replayed events: no double count, no ghost, the first join time kept', async () => {
      await sdkA.addGroupMembers('dup', ['fay']);
      const roomId = (await sdkA.createRoom('dup room', { group: 'dup' }))._id;
      const batch1 = [event('room_started', a, roomId), event('participant_joined', a, roomId, 'gus'), event('participant_joined', a, roomId, 'hal')];
      await send(batch1);
      await send(batch1);
      await send([batch1[1]!, batch1[1]!]);
      let listed = (await calls(a, 'fay')).calls;
      assert.equal(listed[0]!.participantCount, 2);
      assert.deepEqual(listed[0]!.participants.map((p) => p.since), [batch1[1]!.at, batch1[2]!.at]);

      // The batch a slow Nuve commits after the gateway's later batches: gus's leave stands.
      const batch2 = [event('participant_left', a, roomId, 'gus')];
      await send(batch2);
      await send(batch1);
      listed = (await calls(a, 'fay')).calls;
      assert.deepEqual(listed[0]!.participants.map((p) => p.id), ['peer-hal']);
      assert.equal(listed[0]!.participantCount, 1);

      // Everything again, in order: the same end state.
      const batch3 = [event('room_finished', a, roomId)];
      await send(batch3);
      for (const b of [batch1, batch2, batch3, batch1, batch2]) await send(b);
      assert.deepEqual((await calls(a, 'fay')).calls, []);

      // The room runs again (the peer id comes back): a fresh call, its own start.
      const again = [event('room_started', a, roomId), event('participant_joined', a, roomId, 'gus')];
      await send(again);
      listed = (await calls(a, 'fay')).calls;
      assert.equal(listed[0]!.since, again[0]!.at);
      assert.deepEqual(listed[0]!.participants, [{ id: 'peer-gus', name: 'Name gus', since: again[1]!.at }]);
      // An end, a start and a join within one batch: the new run stays.
      const restart = [event('room_finished', a, roomId), event('room_started', a, roomId), event('participant_joined', a, roomId, 'ivy')];
      await send(restart);
      listed = (await calls(a, 'fay')).calls;
      assert.equal(listed[0]!.since, restart[1]!.at);
      assert.deepEqual(listed[0]!.participants.map((p) => p.id), ['peer-ivy']);
      // A run whose end never came (its gateway restarted under the same id): the next run's start clears it.
      await send([event('participant_joined', a, roomId, 'ghost')]);
      const rerun = [event('room_started', a, roomId), event('participant_joined', a, roomId, 'jay')];
      await send(rerun);
      listed = (await calls(a, 'fay')).calls;
      assert.equal(listed[0]!.since, rerun[0]!.at);
      assert.deepEqual(listed[0]!.participants.map((p) => p.id), ['peer-jay']);
      await send([event('room_finished', a, roomId)]);
    });

    test('one room on two gateways (moved while the first was cut off): each one’s leave and end touch only its own peers', async () => {
      await sdkA.addGroupMembers('moved', ['una']);
      const roomId = (await sdkA.createRoom('moved room', { group: 'moved' }))._id;
      await send([event('room_started', a, roomId), event('participant_joined', a, roomId, 'old')], 'gw-old');
      const reopened = [event('room_started', a, roomId), event('participant_joined', a, roomId, 'new'), event('participant_joined', a, roomId, 'both')];
      await send(reopened, 'gw-new');
      // The old gateway, back, reports what its copy did meanwhile: the peer that moved left it, then its end.
      await send([event('participant_left', a, roomId, 'both'), event('participant_left', a, roomId, 'old'), event('room_finished', a, roomId)], 'gw-old');
      const [call] = (await calls(a, 'una')).calls;
      assert.deepEqual(call!.participants.map((p) => p.id), ['peer-new', 'peer-both']);
      assert.equal(call!.since, reopened[0]!.at);
      await send([event('room_finished', a, roomId)], 'gw-new');
      assert.deepEqual((await calls(a, 'una')).calls, []);
    });

    test('pruning forgets old tombstones and the presence in deleted rooms, never who is in a room now', async () => {
      const later = () => Date.now() + 60_000;
      await h.store.calls.prune(later());
      await sdkA.addGroupMembers('prune', ['pat']);
      const kept = (await sdkA.createRoom('kept', { group: 'prune' }))._id;
      const deleted = (await sdkA.createRoom('deleted', { group: 'prune' }))._id;
      await send([event('room_started', a, kept), event('participant_joined', a, kept, 'stay'), event('participant_joined', a, kept, 'go')]);
      await send([event('participant_left', a, kept, 'go'), event('room_started', a, deleted), event('participant_joined', a, deleted, 'orphan')]);
      await sdkA.deleteRoom(deleted);
      // go's tombstone and the deleted room's participant.
      assert.equal(await h.store.calls.prune(later()), 2);
      assert.equal(await h.store.calls.prune(later()), 0, 'nothing left to prune');
      assert.deepEqual((await calls(a, 'pat')).calls.map((c) => c.participants.map((p) => p.id)), [['peer-stay']]);
      await send([event('room_finished', a, kept)]);
    });

    test(`bounded: ${MAX_GROUP_CALLS} calls at most, the latest started first; ${MAX_CALL_PARTICIPANTS} participants listed of the full count`, async () => {
      const groups = ['b1', 'b2', 'b3'];
      for (const g of groups) await sdkA.addGroupMembers(g, ['jo']);
      const rooms: string[] = [];
      const events: RoomEvent[] = [];
      for (let i = 0; i < MAX_GROUP_CALLS + 5; i++) {
        const id = (await sdkA.createRoom(`bounded ${i}`, { group: groups[i % 3] }))._id;
        rooms.push(id);
        events.push(event('room_started', a, id), event('participant_joined', a, id, `p${i}`));
      }
      const crowded = rooms[MAX_GROUP_CALLS + 1]!;
      for (let i = 0; i < MAX_CALL_PARTICIPANTS + 10; i++) events.push(event('participant_joined', a, crowded, `crowd${i}`));
      await send(events.slice(0, 200));
      await send(events.slice(200));
      const { groups: n, calls: listed } = await calls(a, 'jo');
      assert.equal(n, 3);
      assert.equal(listed.length, MAX_GROUP_CALLS);
      assert.deepEqual(
        listed.map((c) => c.roomId),
        [...rooms].reverse().slice(0, MAX_GROUP_CALLS),
        'the most recently started first; the 5 oldest left out',
      );
      const big = listed.find((c) => c.roomId === crowded)!;
      assert.equal(big.participantCount, MAX_CALL_PARTICIPANTS + 11);
      assert.equal(big.participants.length, MAX_CALL_PARTICIPANTS);
      assert.deepEqual(big.participants.slice(0, 2).map((p) => p.id), [`peer-p${MAX_GROUP_CALLS + 1}`, 'peer-crowd0'], 'by join time');
      await send(rooms.map((id) => event('room_finished', a, id)));
      assert.deepEqual((await calls(a, 'jo')).calls, []);
    });

    test('a gateway dropped by the registry leaves no call behind; another gateway’s calls stay', async () => {
      await sdkA.addGroupMembers('crash', ['kim']);
      const onDead = (await sdkA.createRoom('on dead gateway', { group: 'crash' }))._id;
      const onLive = (await sdkA.createRoom('on live gateway', { group: 'crash' }))._id;
      const live = await h.addGateway('gw-live');
      await send([event('room_started', a, onDead), event('participant_joined', a, onDead, 'lee')], 'gw-1');
      await send([event('room_started', a, onLive), event('participant_joined', a, onLive, 'max')], 'gw-live');
      assert.equal((await calls(a, 'kim')).calls.length, 2);
      h.gateways.find((g) => g.id === 'gw-1')!.cut();
      await waitFor(() => h.nuve.registry.get('gw-1') === undefined, 5000, 'gw-1 dropped');
      await waitFor(async () => (await calls(a, 'kim')).calls.length === 1, 2000, 'the dead gateway’s call gone');
      assert.deepEqual((await calls(a, 'kim')).calls.map((c) => c.roomId), [onLive]);
      live.stop();
    });

    test('the responder refuses malformed requests with INVALID_REQUEST and answers unstorable names with nothing', async () => {
      for (const bad of [null, {}, { serviceId: a.id }, { serviceId: a.id, userName: 'x', extra: 1 }, { serviceId: a.id, userName: 'x'.repeat(257) }, 'text']) {
        await assert.rejects(h.bus.request(groupCallsSubjects.forUser, bad), { code: 'INVALID_REQUEST' }, JSON.stringify(bad));
      }
      assert.deepEqual(await h.bus.request(groupCallsSubjects.forUser, { serviceId: a.id, userName: 'nul\u0000' }), { groups: 0, calls: [] });
      assert.deepEqual(await h.bus.request(groupCallsSubjects.forUser, { serviceId: a.id, userName: 'half \ud800' }), { groups: 0, calls: [] });
    });
  });
}
