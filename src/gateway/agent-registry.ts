import { EventEmitter } from 'node:events';
import { type AgentHeartbeat, agentHeartbeatSchema, agentSubjects } from '../core/agent-protocol.js';
import type { Bus, Subscription } from '../core/bus/bus.js';
import type { Logger } from '../core/logger.js';
import { z } from 'zod';

export interface AgentEntry extends AgentHeartbeat {
  lastSeen: number;
  /** Rooms this gateway placed on the agent since its last heartbeat (not yet in its load). */
  recentPlacements: number;
}

interface AgentRegistryEvents {
  removed: [AgentEntry];
}

/**
 * The gateway's list of media agents, from their heartbeats. An agent silent
 * for `suspectMs` is in disconnect tolerance (kept, but given no new rooms);
 * silent for `removeMs`, it is removed and its rooms' peers are moved.
 * Placement (ROOM-BEST) picks the healthy, available agent with the fewest
 * routers, counting the placements this gateway made since that agent's last
 * heartbeat, so a burst of new rooms spreads instead of piling onto one agent.
 */
export class AgentRegistry extends EventEmitter<AgentRegistryEvents> {
  private readonly agents = new Map<string, AgentEntry>();
  private readonly subscriptions: Subscription[] = [];
  private sweepTimer?: NodeJS.Timeout;

  constructor(
    private readonly bus: Bus,
    private readonly logger: Logger,
    private readonly suspectMs: number,
    private readonly removeMs: number,
  ) {
    super();
  }

  start(): void {
    this.subscriptions.push(
      this.bus.subscribe(agentSubjects.heartbeat, (payload) => this.onHeartbeat(payload)),
      this.bus.subscribe(agentSubjects.down, (payload) => {
        const parsed = z.object({ id: z.string() }).safeParse(payload);
        if (parsed.success) this.remove(parsed.data.id);
      }),
    );
    this.sweepTimer = setInterval(() => {
      const deadline = Date.now() - this.removeMs;
      for (const agent of this.agents.values()) if (agent.lastSeen < deadline) this.remove(agent.id);
    }, Math.max(50, Math.floor(this.removeMs / 20)));
    this.sweepTimer.unref();
    this.bus.publish(agentSubjects.hello, {});
  }

  stop(): void {
    for (const sub of this.subscriptions.splice(0)) sub.unsubscribe();
    clearInterval(this.sweepTimer);
  }

  get(id: string): AgentEntry | undefined {
    return this.agents.get(id);
  }

  list(): AgentEntry[] {
    return [...this.agents.values()];
  }

  /** Waits briefly for a first agent, so a gateway starting alongside its agents does not refuse the first joins. */
  async waitForAgent(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (this.agents.size === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    return this.agents.size > 0;
  }

  /** Heard from within the suspect window. */
  isHealthy(agent: AgentEntry): boolean {
    return Date.now() - agent.lastSeen < this.suspectMs;
  }

  choose(): AgentEntry | undefined {
    let best: AgentEntry | undefined;
    const score = (a: AgentEntry) => a.load.routers + a.recentPlacements;
    for (const agent of this.agents.values()) {
      if (agent.state !== 'available' || !this.isHealthy(agent)) continue;
      if (!best || score(agent) < score(best) || (score(agent) === score(best) && agent.load.peers < best.load.peers)) {
        best = agent;
      }
    }
    if (best) best.recentPlacements++;
    return best;
  }

  private onHeartbeat(payload: unknown): void {
    const parsed = agentHeartbeatSchema.safeParse(payload);
    if (!parsed.success) {
      this.logger.warn('ignoring malformed agent heartbeat');
      return;
    }
    const known = this.agents.has(parsed.data.id);
    this.agents.set(parsed.data.id, { ...parsed.data, lastSeen: Date.now(), recentPlacements: 0 });
    if (!known) this.logger.info({ agent: parsed.data.id }, 'media agent registered');
  }

  private remove(id: string): void {
    const agent = this.agents.get(id);
    if (!agent) return;
    this.agents.delete(id);
    this.logger.warn({ agent: id }, 'media agent removed');
    this.emit('removed', agent);
  }
}
