import { readFileSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import { cpus, hostname } from 'node:os';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DEFAULT_ROLES } from '../protocol/permissions.js';
import { roleNameSchema } from './grant-schemas.js';

const port = z.number().int().min(0).max(65535);
const url = z.string().url();

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

/** `localhost` or a loopback address (127.0.0.0/8, ::1, ::ffff:127.x): reachable from this host only. */
export function isLoopbackHost(host: string): boolean {
  const address = host.replace(/^\[(.*)\]$/, '$1');
  if (address.toLowerCase() === 'localhost') return true;
  const family = isIP(address);
  return family !== 0 && loopback.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

/**
 * The one configuration of every role. Defaults are the embedded platform:
 * one process, SQLite under ./data, in-process bus, everything on loopback.
 * Every level is strict: a misspelt key fails instead of being ignored.
 */
export const configSchema = z
  .object({
    log: z
      .object({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
        /** `auto`: readable lines (pino-pretty) when stdout is a terminal, JSON otherwise; or always `pretty` / `json`. */
        format: z.enum(['auto', 'pretty', 'json']).default('auto'),
        /** Older switch, kept: true means `pretty`, false `json` (when `format` is `auto`). */
        pretty: z.boolean().optional(),
      })
      .strict()
      .prefault({}),
    bus: z
      .object({
        driver: z.enum(['memory', 'nats', 'rabbitmq']).default('memory'),
        natsUrl: z.string().default('nats://127.0.0.1:4222'),
        /** The RabbitMQ broker of `driver: rabbitmq` (AMQP 0-9-1; `amqps://` for TLS; `?heartbeat=` overrides the 5 s default). */
        amqpUrl: z
          .string()
          .url()
          .regex(/^amqps?:\/\//i, 'must be an amqp:// or amqps:// URL')
          .default('amqp://guest:guest@127.0.0.1:5672'),
        requestTimeoutMs: z.number().int().positive().default(3000),
      })
      .strict()
      .prefault({}),
    tracing: z
      .object({
        /** OpenTelemetry traces over OTLP/HTTP (SkyWalking, Jaeger, Tempo accept it). Off by default. */
        enabled: z.boolean().default(false),
        otlpUrl: z.string().url().default('http://127.0.0.1:4318/v1/traces'),
        serviceName: z.string().min(1).default('mediasoup-signal'),
      })
      .strict()
      .prefault({}),
    ops: z
      .object({
        /**
         * Bearer secret of the operational endpoints (`/metrics` of every process, Nuve's
         * `/metrics/cluster`, `POST /drain`). Unset: they are closed; SIGTERM still drains.
         */
        token: z.string().min(24, 'must be at least 24 characters').max(256).optional(),
      })
      .strict()
      .prefault({}),
    redis: z
      .object({
        /** Shared counters and presence across Nuve instances (replay guard, rate limits). Unset: in-process. */
        url: z.string().optional(),
      })
      .strict()
      .prefault({}),
    store: z
      .object({
        driver: z.enum(['sqlite', 'postgres']).default('sqlite'),
        sqlitePath: z.string().min(1).default('./data/mediasoup-signal.db'),
        postgresUrl: z.string().default('postgres://postgres@127.0.0.1:5432/mediasoup_signal'),
        poolSize: z.number().int().positive().default(10),
      })
      .strict()
      .prefault({}),
    nuve: z
      .object({
        host: z.string().default('127.0.0.1'),
        port: port.default(3000),
        /** Bootstrap tenant; generated on first start and kept in the store when not given. */
        superService: z
          .object({
            id: z.string().regex(/^[0-9a-f]{24}$/, 'must be 24 lowercase hex characters').optional(),
            key: z.string().min(16, 'must be at least 16 characters').optional(),
            name: z.string().min(1).default('superService'),
          })
          .strict()
          .prefault({}),
        tokenTtlSec: z.number().int().positive().max(86_400).default(180),
        /**
         * Roles a token may be asked for (`mauth_role`), each with what it may do; a permission left out
         * is not granted. Added to `presenter` (everything) and `viewer` (subscribe), which they may redefine.
         */
        roles: z
          .record(
            roleNameSchema,
            z
              .object({
                publish: z.boolean().default(false),
                subscribe: z.boolean().default(false),
                publishData: z.boolean().default(false),
                record: z.boolean().default(false),
              })
              .strict(),
          )
          .refine((roles) => Object.keys(roles).length <= 64, 'at most 64 roles')
          .default({})
          .transform((roles) => ({ ...DEFAULT_ROLES, ...roles })),
        /** MAuth requests whose timestamp is further than this from the server clock are refused. */
        authWindowSec: z.number().int().positive().default(300),
        /**
         * Most MAuth headers the in-process replay guard remembers (about 100 bytes each). Beyond it the
         * oldest are dropped and headers as old are refused. With Redis (redis.url) the guard lives there.
         */
        replayGuardMaxEntries: z.number().int().positive().default(1_000_000),
        bodyLimitBytes: z.number().int().positive().default(64 * 1024),
        /** A gateway that sent no keepalive for this long is removed and its rooms may move. */
        gatewayTimeoutMs: z.number().int().positive().default(6000),
        /** First-level rate limits (shared through Redis when redis.url is set). */
        rateLimit: z
          .object({
            enabled: z.boolean().default(true),
            /** Requests per second across all Nuve instances. */
            globalPerSec: z.number().int().positive().default(1000),
            /** Above the global rate, wait in a bounded queue instead of failing at once. */
            queue: z.boolean().default(false),
            queueSize: z.number().int().positive().default(2000),
            /** Never queued: beyond this rate requests get 429 at once. */
            hardCapPerSec: z.number().int().positive().default(10_000),
            /** Per client address; app servers call Nuve from few addresses, so this stays near the global rate. */
            perIpPerSec: z.number().int().positive().default(500),
          })
          .strict()
          .prefault({}),
        /**
         * Embedded-only developer endpoints (the playground creates rooms through them). They act as the
         * superService without authentication, so they are refused unless `host` is a loopback address.
         */
        devEndpoints: z.boolean().default(false),
        /** Whether the room API may unmute a participant's track, for tenants that did not decide (`PATCH /settings`); muting is always allowed. */
        allowRemoteUnmute: z.boolean().default(false),
        /** Delivery of room events from the outbox to tenants' webhook URLs (every Nuve delivers; rows are leased). */
        webhooks: z
          .object({
            /** An event still undelivered this long after it happened is given up and recorded as failed. */
            retentionSec: z.number().int().positive().default(86_400),
            /** Retries wait base·2^(attempt-1), ±50 % jitter, at most backoffMaxMs. */
            backoffBaseMs: z.number().int().positive().default(1000),
            backoffMaxMs: z.number().int().positive().default(600_000),
            /** One POST's limit: connect, answer and body. */
            timeoutMs: z.number().int().positive().max(60_000).default(10_000),
            /** Deliveries in flight from this Nuve, and at most this many of them to one tenant. */
            concurrency: z.number().int().positive().max(1000).default(32),
            perTenantConcurrency: z.number().int().positive().max(1000).default(4),
            /** How often the outbox is looked at when nothing woke the worker (a new event or a finished delivery). */
            pollMs: z.number().int().positive().default(500),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .superRefine((nuve, ctx) => {
        if (nuve.devEndpoints && !isLoopbackHost(nuve.host)) {
          ctx.addIssue({
            code: 'custom',
            path: ['devEndpoints'],
            message: `unauthenticated developer endpoints need a loopback nuve.host, not "${nuve.host}"`,
          });
        }
      })
      .prefault({}),
    gateway: z
      .object({
        id: z.string().min(1).default(`gw-${hostname()}-${process.pid}`),
        host: z.string().default('127.0.0.1'),
        port: port.default(8080),
        /** The WebSocket URL clients reach this gateway at; goes into tokens. */
        publicUrl: url.optional(),
        weight: z.number().positive().default(1),
        keepaliveMs: z.number().int().positive().default(2000),
        /** How long a peer's requests may wait for an agent before failing. */
        agentRequestTimeoutMs: z.number().int().positive().default(5000),
        /** An agent silent this long gets no new rooms ("disconnect tolerance"); its calls go on. */
        agentSuspectMs: z.number().int().positive().default(2000),
        /** An agent silent this long is removed: its peers are told and disconnected to rejoin elsewhere. */
        agentRemoveMs: z.number().int().positive().default(3000),
        maxMessageBytes: z.number().int().positive().default(256 * 1024),
        /** Local limits of this gateway (each gateway counts for itself). */
        rateLimit: z
          .object({
            enabled: z.boolean().default(true),
            /**
             * New WebSocket connections per second from one client address (an IPv6 /64
             * counts as one), checked before anything else, so one address cannot starve the others.
             */
            connectionsPerSecPerIp: z.number().int().positive().default(50),
            /** New connections per second that need Nuve (a token not refused locally), from all addresses. */
            connectionsPerSec: z.number().int().positive().default(200),
            requestsPerSecPerClient: z.number().int().positive().default(50),
            /** A client refused this many times within 10 s is disconnected. */
            disconnectAfterRejections: z.number().int().positive().default(100),
          })
          .strict()
          .prefault({}),
        /**
         * Tokens refused once (or already used) that this gateway remembers, so their reuse is
         * refused without asking Nuve; each takes about 100 bytes, the oldest go first.
         */
        refusedTokenCacheSize: z.number().int().positive().max(1_000_000).default(10_000),
        /** What one peer (a client or a broadcaster) may hold at once; beyond it requests get PEER_LIMIT_REACHED (403). */
        limits: z
          .object({
            /** A client needs two (send, receive); a broadcaster one per stream in or out. */
            maxTransportsPerPeer: z.number().int().positive().default(4),
            /** Microphone, camera and screen (video and audio) with room to spare. */
            maxProducersPerPeer: z.number().int().positive().default(16),
            /** One per producer of every other peer: the largest room a peer receives completely. */
            maxConsumersPerPeer: z.number().int().positive().default(1000),
            maxDataProducersPerPeer: z.number().int().positive().default(8),
            maxDataConsumersPerPeer: z.number().int().positive().default(500),
          })
          .strict()
          .prefault({}),
        /** After SIGTERM: keep serving existing rooms, exit when the last client leaves or after this long. */
        drainGraceSec: z.number().int().nonnegative().default(1800),
        /** Rooms spanning several agents: TTL-BEST placement, and ROOM-BEST spill. */
        cascade: z
          .object({
            /**
             * Longest a join waits to learn distances: clients are told to spend at
             * most this on their probes, and agents' probes of a client are cut off
             * after it. An agent that has not answered by then is left unmeasured.
             */
            probeTimeoutMs: z.number().int().min(50).max(10_000).default(800),
            /** Port agents aim their TCP probe at when the client reported no distances (any answer, even a refusal, times the round trip). */
            clientProbePort: port.min(1).default(9),
            /** An agent already carrying the room is preferred unless another is nearer by more than this (fewer links). */
            sameRoomToleranceMs: z.number().nonnegative().default(10),
            /** SRTP on the PipeTransports between agents. Turn off only on a trusted private network. */
            srtp: z.boolean().default(true),
            /** ROOM-BEST: once this gateway's peers hold this many consumers on the room's agent, new peers go to another agent, linked by pipes (0: never). */
            spillConsumers: z.number().int().nonnegative().default(0),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    agent: z
      .object({
        id: z.string().min(1).default(`agent-${hostname()}-${process.pid}`),
        numWorkers: z.number().int().positive().default(cpus().length),
        workerLogLevel: z.enum(['debug', 'warn', 'error', 'none']).default('warn'),
        listenIp: z.string().default('127.0.0.1'),
        /** Address put in ICE candidates and plain transports; defaults to listenIp. */
        announcedAddress: z.string().optional(),
        /** Worker i's WebRtcServer listens on UDP and TCP port webRtcBasePort + i. */
        webRtcBasePort: port.default(44444),
        /** Ports for plain-RTP (broadcaster) transports. */
        plainRtpMinPort: port.default(40000),
        plainRtpMaxPort: port.default(40999),
        /** Load report period; a third of gateway.agentRemoveMs, so two lost reports never remove a live agent. */
        heartbeatMs: z.number().int().positive().default(1000),
        initialOutgoingBitrate: z.number().int().positive().default(1_000_000),
        /** After SIGTERM: keep existing media, exit when the last room closes or after this long. */
        drainGraceSec: z.number().int().nonnegative().default(1800),
        /** Port of the agent's HTTP probe server (/health, /ready; /metrics and /drain with ops.token); unset: none (embedded). */
        healthPort: port.optional(),
        /**
         * Public port (on listenIp) where clients time round trips to this agent
         * (`GET /probe`) for TTL-BEST placement; unset: clients cannot probe it
         * and gateways fall back to the agent's own probe of the client.
         */
        clientProbePort: port.optional(),
        /** The probe URL given to clients, when they reach it another way (HTTPS proxy); default http://announcedAddress:clientProbePort/probe. */
        clientProbeUrl: url.optional(),
        /** Rooms of a gateway silent this long are closed: nobody is left to close them. */
        gatewayTimeoutMs: z.number().int().positive().default(6000),
        /**
         * Consumers one router of a room carries before the room's next peer goes to another
         * router of the room on another worker (linked by pipeToRouter); 0: one router per room.
         */
        routerConsumerLimit: z.number().int().nonnegative().max(1_000_000).default(1500),
        /**
         * One idle router kept ready per worker: a new room takes it, so its first join does not wait
         * for the worker to create the router (and its capabilities), and a new spare is made behind it.
         */
        spareRouters: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    push: z
      .object({
        /** Largest push payload (its JSON, in bytes); Nuve answers 413 PUSH_PAYLOAD_TOO_LARGE past it. */
        maxPayloadBytes: z.number().int().positive().max(64 * 1024).default(4096),
        /** Unarrived safe messages kept per user; a push past it drops the user's oldest (the client is told). */
        maxPendingPerUser: z.number().int().positive().max(100_000).default(1000),
        /** A session's location lives this long unless its gateway refreshes it (a third of it apart): a crashed gateway's vanish. */
        locationTtlMs: z.number().int().min(3000).default(30_000),
        /** How often expired safe messages are swept from the store. */
        sweepMs: z.number().int().positive().default(10_000),
      })
      .strict()
      .prefault({}),
    /** Online-push distributors (`mediasoup-signal distributor`), and how gateways and Nuve reach them. */
    distributor: z
      .object({
        /** A bus subject token, unique in the cluster. */
        id: z
          .string()
          .regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, - and _, at most 64')
          .default(`dist-${hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 40)}-${process.pid}`),
        /** Share of the users relative to the other distributors (virtual nodes on the ring). */
        weight: z.number().positive().max(1000).default(1),
        heartbeatMs: z.number().int().positive().default(1000),
        /** A distributor silent this long leaves every process's ring (its users go to the others). */
        timeoutMs: z.number().int().positive().default(3000),
        /** How long a sender (gateway, Nuve) waits for a distributor to handle a batch before sending it again. */
        requestTimeoutMs: z.number().int().positive().default(5000),
        /** Unsafe (default): only the user's sessions online now. Safe: stored, restored on connect, kept `safeTtlSec`. */
        push: z.enum(['unsafe', 'safe']).default('unsafe'),
        /** Safe pushes expire this long after being sent: a late notification would list calls long over. */
        safeTtlSec: z.number().int().positive().max(3600).default(60),
        /** Event ids remembered to drop copies (about 100 bytes each). */
        dedupeSize: z.number().int().positive().max(10_000_000).default(100_000),
        /** Ask for the calls again just before pushing, and list only those still going (a call that ended meanwhile is left out). */
        recheckCalls: z.boolean().default(true),
        /** The push payload is cut (participants, then calls) to this size; at most push.maxPayloadBytes. */
        maxPayloadBytes: z.number().int().min(512).max(64 * 1024).default(4096),
        /** Events handled at once by one distributor. */
        concurrency: z.number().int().positive().max(10_000).default(256),
        /** Events a sender keeps while no distributor takes them; past it the oldest are dropped (metric, log). */
        senderMaxPending: z.number().int().positive().default(100_000),
        /** An event no distributor took this long after it happened is dropped as stale (metric, log). */
        senderMaxAgeMs: z.number().int().positive().default(60_000),
        /** Port of the distributor's HTTP probe server (/health, /ready; /metrics and /drain with ops.token); unset: none. */
        healthPort: port.optional(),
      })
      .strict()
      .prefault({}),
    /** Business services (issue 17): their discovery, the callers' defaults and the gateway's client and trusted edges. */
    services: z
      .object({
        /** How instances find each other: heartbeats on the bus, or keys with a lease in etcd. */
        discovery: z.enum(['bus', 'etcd']).default('bus'),
        etcd: z
          .object({
            /** etcd client URLs; as one text setting (an MSS_* variable), comma-separated: `http://a:2379,http://b:2379`. */
            hosts: z
              .preprocess(
                (value) => (typeof value === 'string' ? value.split(',').map((host) => host.trim()).filter(Boolean) : value),
                z.array(z.string().url().max(256)).min(1).max(16),
              )
              .default(['http://127.0.0.1:2379']),
            /** Keys live under `<prefix>/`: segments joined by `/`, no leading or trailing one. */
            prefix: z
              .string()
              .max(128)
              .regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/, 'segments of letters, digits, _ . - joined by /, no leading or trailing /')
              .default('mss/services'),
            leaseTtlSec: z.number().int().min(2).max(600).default(5),
          })
          .strict()
          .prefault({}),
        /** Bus discovery: every instance announces itself (and its load) this often… */
        heartbeatMs: z.number().int().min(50).default(1000),
        /** …and is dropped from every view after this long silent. */
        timeoutMs: z.number().int().min(100).default(3000),
        /** A call's timeout unless the method or the call names one. */
        defaultTimeoutMs: z.number().int().positive().max(300_000).default(10_000),
        /** Largest call arguments (their JSON, in bytes). */
        maxPayloadBytes: z.number().int().positive().max(1024 * 1024).default(64 * 1024),
        /**
         * Largest answer an instance sends (its JSON, in bytes): a bigger one is answered SERVICE_REPLY_TOO_LARGE instead.
         * Below the bus's own message bound (NATS: max_payload, 1 MiB by default), past which the answer would be lost
         * and the call would look like a lost instance.
         */
        maxReplyBytes: z.number().int().positive().max(1024 * 1024).default(256 * 1024),
        /** How callers pick an instance unless the call or `strategies[service]` says otherwise. */
        defaultStrategy: z.enum(['random', 'round-robin', 'hash', 'least-load']).default('round-robin'),
        strategies: z.record(z.string(), z.enum(['random', 'round-robin', 'hash', 'least-load'])).default({}),
        /** An instance that stopped answering is asked this often whether it is back. */
        probeMs: z.number().int().positive().default(1000),
        /**
         * The longest a caller's batch of calls waits to grow while its instance has answered nothing of the previous
         * one (it usually goes sooner, with that first answer); 0 sends every turn's calls at once. Latency for CPU.
         */
        batchHoldMs: z.number().int().min(0).max(50).default(1),
        /** The gateway's busiest service callers in its `/status`: calls per second over windows this long, the top `size`. */
        topCallers: z
          .object({
            windowMs: z.number().int().min(100).max(300_000).default(10_000),
            size: z.number().int().min(1).max(100).default(10),
          })
          .strict()
          .prefault({}),
        /** Client connections (every channel, not only calls) are pinged this often and dropped after twice it without a pong. */
        clientPingMs: z.number().int().min(100).max(300_000).default(10_000),
        /** The gateway's edge for trusted servers (game servers acting for many users): off without credentials. */
        trusted: z
          .object({
            host: z.string().default('127.0.0.1'),
            port: port.default(0),
            /** Each trusted server's name and secret (sent as `Authorization: Bearer <secret>`), optionally limited to tenants. */
            credentials: z
              .array(
                z
                  .object({
                    name: z.string().min(1).max(64),
                    secret: z.string().min(24, 'must be at least 24 characters').max(256),
                    tenants: z.array(z.string().min(1).max(64)).optional(),
                  })
                  .strict(),
              )
              .default([]),
            /** A silent trusted connection is pinged after this long and dropped after twice it. */
            pingMs: z.number().int().min(100).default(10_000),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** `MSS_NUVE__SUPER_SERVICE__KEY=...` → `{ nuve: { superService: { key } } }`. */
export const ENV_PREFIX = 'MSS_';

function camel(segment: string): string {
  return segment.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** The schema of the setting at `path` with defaults/optionals unwrapped, if the path names one. */
function settingSchema(path: readonly string[]): z.core.$ZodType | undefined {
  const unwrap = (schema: z.core.$ZodType | undefined): z.core.$ZodType | undefined => {
    let node = schema;
    while (node && ['default', 'prefault', 'optional', 'nullable'].includes(node._zod.def.type)) {
      node = (node._zod.def as unknown as { innerType: z.core.$ZodType }).innerType;
    }
    return node;
  };
  let node: z.core.$ZodType | undefined = configSchema;
  for (const key of path) {
    node = unwrap(node);
    if (!node || node._zod.def.type !== 'object') return undefined;
    node = (node._zod.def as z.core.$ZodObjectDef).shape[key];
  }
  return unwrap(node);
}

function parseEnvValue(raw: string, path: readonly string[]): unknown {
  // A text setting keeps the text as given, even when it looks like a number (an all-digit id or key).
  if (settingSchema(path)?._zod.def.type === 'string') return raw;
  // Numbers and booleans arrive as text; JSON gives them their type. Anything else stays a string.
  try {
    const value: unknown = JSON.parse(raw);
    return typeof value === 'object' && value !== null ? raw : value;
  } catch {
    return raw;
  }
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const prev = out[key];
    out[key] =
      typeof value === 'object' && value !== null && !Array.isArray(value) && typeof prev === 'object' && prev !== null
        ? deepMerge(prev as Record<string, unknown>, value as Record<string, unknown>)
        : value;
  }
  return out;
}

export function envOverrides(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || raw === undefined || name === `${ENV_PREFIX}CONFIG`) continue;
    const path = name.slice(ENV_PREFIX.length).split('__').map(camel);
    setPath(out, path, parseEnvValue(raw, path));
  }
  return out;
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  try {
    const parsed: unknown = ['.yaml', '.yml'].includes(extname(path)) ? parseYaml(text) : JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new Error('top level must be an object');
    }
    return parsed as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`cannot parse config file ${path}: ${(err as Error).message}`);
  }
}

/** Parses layered input; a bad value fails naming the key and the reason. */
export function parseConfig(input: unknown): Config {
  const result = configSchema.safeParse(input);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const key = issue.path.join('.') || '(root)';
    return issue.code === 'unrecognized_keys'
      ? `${key === '(root)' ? '' : `${key}.`}${issue.keys.join(', ')}: unknown key`
      : `${key}: ${issue.message}`;
  });
  throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
}

/** Defaults ← file (`--config` or MSS_CONFIG; JSON or YAML) ← MSS_* environment ← explicit overrides. */
export function loadConfig(options: { file?: string; env?: NodeJS.ProcessEnv; overrides?: ConfigInput } = {}): Config {
  const env = options.env ?? process.env;
  const file = options.file ?? env[`${ENV_PREFIX}CONFIG`];
  let layered: Record<string, unknown> = file ? readConfigFile(file) : {};
  layered = deepMerge(layered, envOverrides(env));
  if (options.overrides) layered = deepMerge(layered, options.overrides as Record<string, unknown>);
  return parseConfig(layered);
}
