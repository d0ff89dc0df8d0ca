import { z } from 'zod';
import { type AgentHeartbeat, agentHeartbeatSchema, agentSubjects } from '../core/agent-protocol.js';
import type { Bus, Subscription } from '../core/bus/bus.js';
import type { Logger } from '../core/logger.js';

export interface AgentStatusEntry extends AgentHeartbeat {
  lastSeen: number;
}

/**
 * Nuve's read-only view of the media agents, for the status API: the load
 * they publish in their heartbeats (workers, routers, transports, producers,
 * consumers, peers, CPU). Nuve places nothing on agents (gateways do); an
 * agent silent for `timeoutMs`, or one that said `agent.down`, is dropped.
 */
export class AgentDirectory {
  private readonly agents = new Map<string, AgentStatusEntry>();
  private readonly subscriptions: Subscription[] = [];
  private sweepTimer?: NodeJS.Timeout;

  constructor(
    private readonly bus: Bus,
    private readonly logger: Logger,
    private readonly timeoutMs: number,
  ) {}

  start(): void {
    this.subscriptions.push(
      this.bus.subscribe(agentSubjects.heartbeat, (payload) => {
        const parsed = agentHeartbeatSchema.safeParse(payload);
        if (!parsed.success) {
          this.logger.debug('status: ignoring malformed agent heartbeat');
          return;
        }
        this.agents.set(parsed.data.id, { ...parsed.data, lastSeen: Date.now() });
      }),
      this.bus.subscribe(agentSubjects.down, (payload) => {
        const parsed = z.object({ id: z.string() }).safeParse(payload);
        if (parsed.success) this.agents.delete(parsed.data.id);
      }),
    );
    this.sweepTimer = setInterval(() => {
      const deadline = Date.now() - this.timeoutMs;
      for (const agent of this.agents.values()) if (agent.lastSeen < deadline) this.agents.delete(agent.id);
    }, Math.max(100, Math.floor(this.timeoutMs / 4)));
    this.sweepTimer.unref();
    // Agents answer `agent.hello` with a heartbeat at once, so the view is complete right after start.
    this.bus.publish(agentSubjects.hello, {});
  }

  stop(): void {
    for (const sub of this.subscriptions.splice(0)) sub.unsubscribe();
    clearInterval(this.sweepTimer);
  }

  list(): AgentStatusEntry[] {
    return [...this.agents.values()].sort((a, b) => a.id.localeCompare(b.id));
  }
}
