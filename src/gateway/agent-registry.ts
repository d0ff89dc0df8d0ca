import { type AgentHeartbeat, agentHeartbeatSchema, agentSubjects } from '../core/agent-protocol.js';
import type { Bus } from '../core/bus/bus.js';
import { HeartbeatTable, type Seen } from '../core/heartbeat-table.js';
import type { Logger } from '../core/logger.js';

export type AgentEntry = Seen<AgentHeartbeat>;

/**
 * The gateway's list of media agents, from their heartbeats. An agent silent
 * for `suspectMs` is in disconnect tolerance (kept, but given no new rooms);
 * silent for `removeMs`, it is removed and its rooms' peers are moved.
 * Placement (ROOM-BEST) picks the healthy, available agent with the fewest
 * routers, counting the placements this gateway made since that agent's last
 * heartbeat, so a burst of new rooms spreads instead of piling onto one agent.
 */
export class AgentRegistry extends HeartbeatTable<AgentHeartbeat> {
  /** Rooms placed on each agent since its last heartbeat (not yet in the load it reported). */
  private readonly recentPlacements = new Map<string, number>();

  constructor(
    bus: Bus,
    logger: Logger,
    private readonly suspectMs: number,
    removeMs: number,
  ) {
    super(bus, logger, {
      heartbeat: agentSubjects.heartbeat,
      down: agentSubjects.down,
      hello: agentSubjects.hello,
      schema: agentHeartbeatSchema,
      timeoutMs: removeMs,
      what: 'media agent',
    });
    this.on('updated', (agent) => this.recentPlacements.delete(agent.id));
    this.on('removed', (agent) => this.recentPlacements.delete(agent.id));
  }

  /** Waits briefly for a first agent, so a gateway starting alongside its agents does not refuse the first joins. */
  async waitForAgent(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (this.size === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    return this.size > 0;
  }

  /** Heard from within the suspect window. */
  isHealthy(agent: AgentEntry): boolean {
    return Date.now() - agent.lastSeen < this.suspectMs;
  }

  /** Agents that take new peers: available (not draining) and heard from recently. */
  candidates(): AgentEntry[] {
    return this.list().filter((agent) => agent.state === 'available' && this.isHealthy(agent));
  }

  /** Rooms on the agent, counting this gateway's placements it has not reported yet. */
  score(agent: AgentEntry): number {
    return agent.load.routers + (this.recentPlacements.get(agent.id) ?? 0);
  }

  /** Counts a placement decided elsewhere (TTL-BEST) against the agent until its next report. */
  notePlacement(agentId: string): void {
    this.recentPlacements.set(agentId, (this.recentPlacements.get(agentId) ?? 0) + 1);
  }

  /** ROOM-BEST: the emptiest candidate, not one of `exclude`. */
  choose(exclude: ReadonlySet<string> = new Set()): AgentEntry | undefined {
    let best: AgentEntry | undefined;
    for (const agent of this.candidates()) {
      if (exclude.has(agent.id)) continue;
      const score = this.score(agent);
      if (!best || score < this.score(best) || (score === this.score(best) && agent.load.peers < best.load.peers)) {
        best = agent;
      }
    }
    if (best) this.notePlacement(best.id);
    return best;
  }
}
