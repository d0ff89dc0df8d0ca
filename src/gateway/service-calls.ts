import { randomUUID } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { Bus } from '../core/bus/bus.js';
import type { Config } from '../core/config.js';
import { AppError, describeIssues } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { ServiceCaller } from '../core/service-caller.js';
import { createServiceDiscovery } from '../core/service-discovery-factory.js';
import type { ServiceDiscovery } from '../core/service-discovery.js';
import { type CallerIdentity, type ClientCall, clientCallSchema } from '../core/service-protocol.js';
import { type Channel, type ChannelContext, type ChannelHandler, requireScope } from './edge/channel.js';
import { ServiceCallMetrics } from './service-metrics.js';
import { TopCallers, type TopCallersSnapshot } from './top-callers.js';
import { TrustedEdge } from './trusted-edge.js';

/**
 * The gateway's side of business services (c2s): a channel of the client edge
 * for sessions with the scope `rpc`, claiming `call`. The caller identity is
 * the session's (tenant, user, this connection), never the client's payload,
 * and the kind `client`, so an instance refuses it every internal method.
 * Trusted servers reach the same caller through the trusted edge.
 */
export class ServiceCalls {
  readonly discovery: ServiceDiscovery;
  readonly caller: ServiceCaller;
  readonly trusted?: TrustedEdge;
  /** The busiest callers, for `/status` (bounded: see TopCallers). */
  readonly topCallers: TopCallers;
  private clientConnections = 0;

  constructor(
    config: Config,
    bus: Bus,
    private readonly logger: Logger,
  ) {
    this.discovery = createServiceDiscovery(config.services, bus, logger);
    this.caller = new ServiceCaller(bus, this.discovery, logger, config.services);
    this.topCallers = new TopCallers(config.services.topCallers.windowMs, config.services.topCallers.size);
    if (config.services.trusted.credentials.length > 0) this.trusted = new TrustedEdge(config.services.trusted, this.caller, this.topCallers, logger);
  }

  channel(): Channel {
    return {
      name: 'services',
      claims: (method) => method === 'call',
      refusal: requireScope('rpc', 'service calls'),
      open: (context) => this.open(context),
    };
  }

  async start(): Promise<void> {
    await this.discovery.start();
    this.caller.start();
    await this.trusted?.start();
  }

  /** Connections that may call now: client sessions with the scope `rpc`, and trusted servers. */
  get callers(): number {
    return this.clientConnections + (this.trusted?.connections ?? 0);
  }

  /** The service flow for the gateway's `/status`: each service's instances as this gateway routes to them, and the busiest callers. */
  status(): { instances: ReturnType<ServiceCaller['describe']>; topCallers: TopCallersSnapshot } {
    return { instances: this.caller.describe(), topCallers: this.topCallers.snapshot() };
  }

  registerMetrics(registry: Registry): void {
    const metrics = new ServiceCallMetrics(registry, () => this.callers);
    this.caller.observer = (service, method, code, seconds) => metrics.observe(service, method, code, seconds);
  }

  async close(): Promise<void> {
    await this.trusted?.close();
    this.topCallers.close();
    this.caller.close();
    await this.discovery.close();
  }

  private async open({ connection, session }: ChannelContext): Promise<ChannelHandler> {
    const identity: CallerIdentity = { tenant: session.serviceId, user: session.userName, connection: randomUUID(), kind: 'client' };
    const rankedAs = TopCallers.callerOf('client', identity.tenant, identity.user);
    this.clientConnections++;
    connection.on('close', () => {
      this.clientConnections--;
      this.caller.forgetConnections(`${identity.connection}\u0000`);
    });
    return {
      spanAttributes: { 'mss.user': session.userName },
      handle: (_method, data) => {
        this.topCallers.count(rankedAs);
        return callFor(this.caller, identity, data);
      },
    };
  }
}

/** Validates a client's `call` and forwards it for `identity`. */
export function callFor(caller: ServiceCaller, identity: CallerIdentity, data: unknown): Promise<unknown> {
  const parsed = clientCallSchema.safeParse(data);
  if (!parsed.success) throw refused(caller, new AppError('INVALID_REQUEST', `invalid call: ${describeIssues(parsed.error.issues)}`));
  return forward(caller, identity, parsed.data);
}

/** A call refused before it named a real service still counts among the errors (under `_invalid`). */
export function refused(caller: ServiceCaller, err: AppError): AppError {
  caller.observer?.('_invalid', '_invalid', err.code, 0);
  return err;
}

export function forward(caller: ServiceCaller, identity: CallerIdentity, call: ClientCall): Promise<unknown> {
  return caller.call(call.service, call.method, call.args, identity, {
    timeoutMs: call.timeoutMs,
    key: call.key,
    ordered: call.ordered,
    strategy: call.strategy,
  });
}
