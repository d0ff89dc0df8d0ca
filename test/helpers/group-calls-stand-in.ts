import type { Bus, Subscription } from '../../src/core/bus/bus.js';
import { type GroupCallsRequest, type GroupCallsResult, groupCallsSubjects } from '../../src/core/group-calls-protocol.js';
import { NUVE_QUEUE } from '../../src/core/subjects.js';

/**
 * Nuve's answer to the distributor, standing in for it where only the distributor is under test (its
 * cluster test, its bench): every user is in one group with one call going on, in a room of their own.
 */
export function answerEveryoneHasACall(bus: Bus): Subscription {
  return bus.respond(
    groupCallsSubjects.forUser,
    (payload): GroupCallsResult => {
      const { userName } = payload as GroupCallsRequest;
      return {
        groups: 1,
        calls: [{ roomId: `room-of-${userName}`, roomName: 'standup', group: 'team', since: 1, participants: [{ id: 'p', name: 'P', since: 1 }], participantCount: 1 }],
      };
    },
    { queue: NUVE_QUEUE },
  );
}
