import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { type IncomingMessage, type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { Config } from '../core/config.js';
import { AppError, describeIssues, isAppError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ServiceCaller } from '../core/service-caller.js';
import { trustedCallSchema } from '../core/service-protocol.js';
import { ClientConnection } from './edge/connection.js';
import { forward, refused } from './service-calls.js';
import { TopCallers } from './top-callers.js';

type TrustedConfig = Config['services']['trusted'];

/** The largest trusted-server message: a call's arguments plus its envelope. */
const MAX_FRAME_BYTES = 2 * 1024 * 1024;

/**
 * The internal edge for trusted servers (a game server carrying many players
 * on one connection): its own port, a WebSocket speaking protoo, admitted with
 * `Authorization: Bearer <credential>` from `services.trusted.credentials`
 * (compared in constant time). Each `call` names the tenant and user it acts
 * for (a credential may be limited to some tenants) and reaches internal and
 * external methods alike, as kind `trusted`. Silent connections are pinged
 * after `pingMs` and dropped after twice that.
 */
export class TrustedEdge {
  private server?: Server;
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
  private readonly open = new Set<ClientConnection>();
  /** Each credential's secret as a SHA-256 digest: equal-length buffers for timingSafeEqual. */
  private readonly digests: { name: string; digest: Buffer; tenants?: ReadonlySet<string> }[];

  constructor(
    private readonly config: TrustedConfig,
    private readonly caller: ServiceCaller,
    private readonly topCallers: TopCallers,
    private readonly logger: Logger,
  ) {
    this.digests = config.credentials.map((c) => ({ name: c.name, digest: sha256(c.secret), tenants: c.tenants && new Set(c.tenants) }));
  }

  get connections(): number {
    return this.open.size;
  }

  get url(): string {
    const address = this.server?.address() as AddressInfo | null;
    if (!address) throw new Error('trusted edge not listening');
    return `ws://${address.address}:${address.port}`;
  }

  async start(): Promise<void> {
    const server = createServer((_req, res) => {
      res.writeHead(426, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'NOT_FOUND', message: 'WebSocket only' }));
    });
    server.on('upgrade', (req, socket, head) => this.upgrade(req, socket, head));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.port, this.config.host, () => resolve());
    });
    this.server = server;
  }

  async close(): Promise<void> {
    for (const connection of this.open) connection.end('GATEWAY_SHUTDOWN', 'gateway shutting down');
    this.wss.close();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** Which credential the request carries, compared with every configured one in constant time. */
  private credentialOf(req: IncomingMessage): (typeof this.digests)[number] | undefined {
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer (.+)$/.exec(header) : null;
    if (!match) return undefined;
    const digest = sha256(match[1]!);
    let found: (typeof this.digests)[number] | undefined;
    for (const entry of this.digests) if (timingSafeEqual(entry.digest, digest)) found = entry;
    return found;
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const credential = this.credentialOf(req);
    if (!credential) {
      this.logger.warn({ address: req.socket.remoteAddress }, 'trusted edge: refused a connection without a valid credential');
      const body = JSON.stringify({ code: 'TRUSTED_CREDENTIAL_INVALID', message: new AppError('TRUSTED_CREDENTIAL_INVALID').message });
      socket.end(`HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const connection = new ClientConnection(ws, this.logger, this.config.pingMs, socket);
      const connectionId = randomUUID();
      this.open.add(connection);
      this.logger.info({ server: credential.name, connectionId }, 'trusted server connected');
      connection.on('close', () => {
        this.open.delete(connection);
        this.caller.forgetConnections(`${connectionId}/`);
      });
      connection.on('request', (request) => {
        this.handle(credential, connectionId, request.method, request.data).then(
          (result) => connection.respond(request.id, result),
          (err: unknown) => {
            if (!isAppError(err)) this.logger.error({ err }, 'trusted call failed');
            connection.respondError(request.id, isAppError(err) ? err : new AppError('INTERNAL'));
          },
        );
      });
    });
  }

  private async handle(credential: (typeof this.digests)[number], connectionId: string, method: string, data: unknown): Promise<unknown> {
    if (method !== 'call') throw new AppError('UNKNOWN_METHOD', `unknown method "${method}"`);
    const parsed = trustedCallSchema.safeParse(data);
    if (!parsed.success) throw refused(this.caller, new AppError('INVALID_REQUEST', `invalid call: ${describeIssues(parsed.error.issues)}`));
    const call = parsed.data;
    if (credential.tenants && !credential.tenants.has(call.tenant)) {
      throw refused(this.caller, new AppError('TRUSTED_TENANT_NOT_ALLOWED', `"${credential.name}" may not act for tenant ${call.tenant}`));
    }
    this.topCallers.count(TopCallers.callerOf('trusted', call.tenant, call.user));
    // Each user's ordered calls are their own stream: the connection carries many users.
    return forward(this.caller, { tenant: call.tenant, user: call.user, connection: `${connectionId}/${call.user}`, kind: 'trusted' }, call);
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
