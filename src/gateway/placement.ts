import { setTimeout as sleep } from 'node:timers/promises';
import { type AgentResults, agentSubjects } from '../core/agent-protocol.js';
import type { Bus } from '../core/bus/bus.js';

/** Round-trip times in ms, by agent id. */
export type Rtts = Record<string, number>;

export interface Candidate {
  id: string;
  /** Lower is emptier; breaks ties. */
  load: number;
}

/** What ROOM-BEST placement reads of a room. */
export interface RoomLoad {
  /** The agents carrying the room. */
  agentIds: ReadonlySet<string>;
  /** The room's consumers on an agent. */
  consumersOn(agentId: string): number;
}

/** What ROOM-BEST placement reads of the agents: which are known, and the emptiest other one (counted as placed). */
export interface AgentChooser {
  get(agentId: string): unknown;
  choose(exclude: ReadonlySet<string>): { id: string } | undefined;
}

/**
 * ROOM-BEST: the agent the room is on, unless its consumers there passed
 * `spillConsumers` (0: never spill); past it, the emptiest agent the room is
 * not on yet; with none left, the room's first agent all the same.
 */
export function placeWithRoom(room: RoomLoad, agents: AgentChooser, spillConsumers: number): string[] {
  const registered = [...room.agentIds].filter((id) => agents.get(id));
  const open = registered.find((id) => spillConsumers === 0 || room.consumersOn(id) < spillConsumers);
  if (open !== undefined) return [open];
  const fresh = agents.choose(room.agentIds)?.id;
  if (fresh !== undefined) return [fresh];
  return registered.slice(0, 1);
}

/**
 * TTL-BEST: the candidates from nearest to farthest. An agent already
 * carrying the room comes first when it is within `toleranceMs` of the
 * nearest, because every extra agent in a room costs a link and piped
 * copies of streams. Unmeasured agents come last: those of the room, then
 * the least loaded.
 */
export function rankByDistance(candidates: Candidate[], rtts: Rtts, roomAgents: ReadonlySet<string>, toleranceMs: number): string[] {
  const inRoom = (c: Candidate) => roomAgents.has(c.id);
  const rtt = (c: Candidate) => rtts[c.id]!;
  const measured = candidates
    .filter((c) => Number.isFinite(rtts[c.id]))
    .sort((a, b) => rtt(a) - rtt(b) || Number(inRoom(b)) - Number(inRoom(a)) || a.load - b.load);
  const nearest = measured[0];
  const sameRoom = nearest && measured.find((c) => inRoom(c) && rtt(c) <= rtt(nearest) + toleranceMs);
  if (sameRoom) {
    measured.splice(measured.indexOf(sameRoom), 1);
    measured.unshift(sameRoom);
  }
  const unmeasured = candidates
    .filter((c) => !Number.isFinite(rtts[c.id]))
    .sort((a, b) => Number(inRoom(b)) - Number(inRoom(a)) || a.load - b.load);
  return [...measured, ...unmeasured].map((c) => c.id);
}

/**
 * The agents' own measurement of their distance to a client (the fallback
 * when the client reports none), started when the client connects so that it
 * is usually complete by the time the client asks for media. `result`
 * resolves when every agent answered or `timeoutMs` passed, whichever comes
 * first: a slow or unreachable agent costs at most the bound, and is simply
 * left unmeasured.
 */
export class ClientDistance {
  private readonly rtts: Rtts = {};
  readonly result: Promise<Rtts>;

  constructor(bus: Bus, agentIds: string[], address: string, port: number, timeoutMs: number) {
    const probes = agentIds.map((agentId) =>
      bus
        .request<AgentResults['probeClient']>(
          agentSubjects.rpc(agentId),
          { method: 'probeClient', data: { address, port, timeoutMs } },
          { timeoutMs },
        )
        .then(({ rttMs }) => {
          if (rttMs !== null) this.rtts[agentId] = rttMs;
        })
        .catch(() => undefined),
    );
    const abort = new AbortController();
    const bound = sleep(timeoutMs, undefined, { signal: abort.signal, ref: false }).catch(() => undefined);
    this.result = Promise.race([Promise.all(probes), bound]).then(() => {
      abort.abort();
      return { ...this.rtts };
    });
  }
}
