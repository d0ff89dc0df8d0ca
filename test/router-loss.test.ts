import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { types } from 'mediasoup';
import { agentSubjects } from '../src/core/agent-protocol.js';
import { closeCodes } from '../src/protocol/signaling.js';
import { audioRtpParameters } from './helpers/ffmpeg.js';
import { type EmbeddedPlatform, startEmbedded, watchRouters } from './helpers/platform.js';
import { waitFor } from './helpers/nuve-harness.js';
import { ProtooClient, type ProtooError } from './helpers/protoo-client.js';

/**
 * A peer whose media is gone must always be told, however its router went:
 * the whole platform in this process (real gateway, agent and mediasoup).
 */
let platform: EmbeddedPlatform;
/** Every router of the agent's worker (its spare included), seen through mediasoup's own observer. */
const routers: types.Router[] = [];

before(async () => {
  platform = await startEmbedded();
  watchRouters(platform, (router) => routers.push(router));
});
after(async () => platform.close());

async function joinedPeer(roomId: string, name: string) {
  const client = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, name));
  const rtpCapabilities = await client.request('getRouterRtpCapabilities');
  const send = await client.request('createWebRtcTransport', { producing: true, consuming: false });
  await client.request('createWebRtcTransport', { producing: false, consuming: true });
  await client.request('join', { displayName: name, rtpCapabilities });
  return { client, send };
}

/** Closes the room's router behind its gateway's back, as mediasoup or a bug on the agent could. */
function closeRouterUnderTheGateway(roomId: string): void {
  const router = routers.find((r) => !r.closed && (r.appData as { roomId?: string }).roomId === roomId);
  assert.ok(router, 'the room has a router on the agent');
  router.close();
}

/** The room works: a newcomer gets transports and produces. */
async function assertRoomWorks(roomId: string): Promise<void> {
  const carol = await joinedPeer(roomId, 'carol');
  const { id } = await carol.client.request('produce', {
    transportId: carol.send.id,
    kind: 'audio',
    rtpParameters: { ...audioRtpParameters, mid: '0' },
  });
  assert.ok(id);
  carol.client.close();
  await carol.client.closed;
}

describe('a router lost under its gateway', { concurrency: false }, () => {
  test('closed by anything but its gateway: the agent reports it, its peers are told and disconnected, the room works again', async () => {
    const roomId = await platform.createRoom('router-closed');
    const alice = await joinedPeer(roomId, 'alice');
    closeRouterUnderTheGateway(roomId);
    const notice = await alice.client.waitNotification('mediaAgentLost', 3000);
    assert.equal(notice.reason, 'router-closed');
    assert.equal(await alice.client.closed, closeCodes.resume, 'reconnect: the session resumes once');
    await assertRoomWorks(roomId);
  });

  test('its agent restarted under the same id (a new incarnation heartbeats): the peers are told at once', async () => {
    const roomId = await platform.createRoom('agent-restarted');
    const alice = await joinedPeer(roomId, 'alice');
    const agentId = platform.agent!.id;
    // What the gateway sees of an agent that crashed and came back within its silence tolerance.
    const known = platform.gateway!.agents.get(agentId)!;
    platform.bus.publish(agentSubjects.heartbeat, { id: agentId, state: 'available', load: known.load, incarnation: 'a-new-process' });
    const notice = await alice.client.waitNotification('mediaAgentLost', 3000);
    assert.equal(notice.reason, 'agent-restarted');
    assert.equal(await alice.client.closed, closeCodes.resume, 'reconnect: the session resumes once');
    // The real agent's next heartbeat reads as one more restart; once it is known again, the room reopens there.
    await waitFor(() => platform.gateway!.agents.get(agentId)?.incarnation !== 'a-new-process', 3000, 'the real agent to be known again');
    await assertRoomWorks(roomId);
  });

  test('its report lost on the way: the agent answering ROOM_NOT_FOUND is enough for the gateway to tell the peers and reopen', async () => {
    const roomId = await platform.createRoom('router-report-lost');
    const alice = await joinedPeer(roomId, 'alice');
    const bob = await joinedPeer(roomId, 'bob');
    // The routerClosed event never reaches the gateway (a bus blip, an agent restarted under the same id...).
    const bus = platform.bus;
    const publish = bus.publish.bind(bus);
    bus.publish = (subject, payload) => {
      if ((payload as { type?: string } | null)?.type !== 'routerClosed') publish(subject, payload);
    };
    try {
      closeRouterUnderTheGateway(roomId);
      await assert.rejects(
        alice.client.request('produce', { transportId: alice.send.id, kind: 'audio', rtpParameters: { ...audioRtpParameters, mid: '0' } }),
        (err: ProtooError | Error) => ('errorName' in err ? err.errorName === 'ROOM_NOT_FOUND' : err.message === 'socket closed'),
      );
      // Both peers were on that router: both are told, not only the one that asked.
      for (const peer of [alice, bob]) {
        const notice = await peer.client.waitNotification('mediaAgentLost', 3000);
        assert.equal(notice.reason, 'router-lost');
        assert.equal(await peer.client.closed, closeCodes.resume);
      }
      await assertRoomWorks(roomId);
    } finally {
      bus.publish = publish;
    }
  });
});
