import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Bus } from '../../core/bus/bus.js';
import type { Config } from '../../core/config.js';
import { AppError, isAppError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { SpanKind, inSpan } from '../../core/tracing.js';
import type { CloseReasonName } from '../../protocol/codes.js';
import type { ProtooRequest } from '../../protocol/signaling.js';
import type { Channel, ChannelContext, ChannelHandler } from './channel.js';
import { ClientConnection } from './connection.js';
import { GatewayLimits } from './limits.js';
import { TokenGate, TokenReading } from './token-gate.js';

/** The query of a WebSocket request (token, peerId); an unparsable URL has none. */
function queryOf(req: IncomingMessage): URLSearchParams {
  try {
    return new URL(req.url ?? '/', 'ws://gateway').searchParams;
  } catch {
    return new URLSearchParams();
  }
}

/**
 * The token as the client meant it, sent raw (`'?token=' + token`) or
 * percent-encoded. A raw `+` of standard base64 reads as a space in a query
 * string; base64 has no spaces, so every space was a `+`.
 */
function tokenOf(query: URLSearchParams): string | null {
  return query.get('token')?.replaceAll(' ', '+') ?? null;
}

/** The client's IP as agents would see it (IPv4-mapped IPv6 unwrapped). */
function clientAddressOf(req: IncomingMessage): string | undefined {
  const address = req.socket.remoteAddress;
  return address?.startsWith('::ffff:') ? address.slice(7) : address;
}

/** The handler of the channel claiming `method`; throws the refusal of a channel this session may not use. */
function handlerOf(channels: Opened, method: string): ChannelHandler {
  for (const [channel, handler] of channels) {
    if (!channel.claims(method)) continue;
    if (handler instanceof AppError) throw handler;
    return handler;
  }
  throw new AppError('UNKNOWN_METHOD', `unknown method "${method}"`);
}

/**
 * A connection's channels once admitted (those registered by then): the handlers of those its
 * session may use, the refusals of the others.
 */
type Opened = Map<Channel, ChannelHandler | AppError>;

/**
 * Where every client connection enters the gateway: the per-address and shared
 * connection budgets, the one-time token (a session: tenant, user, scopes,
 * room), protoo framing and pings, the per-connection request limit, and the
 * dispatch of each request to the channel that claims its method. Channels
 * (room signaling; later push acks, service calls) plug in with `register`;
 * one connection carries all those its session may use.
 */
export class ClientEdge {
  readonly limits: GatewayLimits;
  readonly tokens: TokenGate;
  private readonly channels: Channel[] = [];
  private readonly connections = new Set<ClientConnection>();
  private readonly wss: WebSocketServer;
  private connectionSerial = 0;

  constructor(
    config: Config['gateway'],
    bus: Bus,
    private readonly logger: Logger,
    /** Clients are pinged this often and dropped when a ping goes unanswered until the next (ClientConnection's default: 10 s). */
    private readonly pingMs?: number,
  ) {
    this.limits = new GatewayLimits(config.rateLimit);
    this.tokens = new TokenGate(bus, config.id, logger, config.refusedTokenCacheSize);
    this.wss = new WebSocketServer({ noServer: true, maxPayload: config.maxMessageBytes });
  }

  /** Adds a channel; its methods must be claimed by no other. */
  register(channel: Channel): void {
    this.channels.push(channel);
  }

  /** Ends every connection with `errorName` (a close reason of protocol/codes.ts) and takes no more. */
  close(errorName: CloseReasonName, reason: string): void {
    for (const connection of [...this.connections]) connection.end(errorName, reason);
    this.wss.close();
  }

  /**
   * A client asks for a WebSocket. The connection budgets are checked before
   * the handshake; a token the gateway refuses by itself still gets its
   * socket, so the client learns why (`closing`, then the close code).
   */
  async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    // Until ws takes the socket, nobody else listens for its errors (a reset would otherwise crash the process).
    socket.on('error', () => socket.destroy());
    const query = queryOf(req);
    const clientAddress = clientAddressOf(req);
    const token = new TokenReading(tokenOf(query));
    const verdict = await this.limits.acceptConnection(clientAddress ?? '', () => this.tokens.needsNuve(token));
    if (verdict !== 'ok') {
      socket.end('HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.connected(ws, socket, token, query, clientAddress));
  }

  private connected(ws: WebSocket, socket: Duplex, token: TokenReading, query: URLSearchParams, clientAddress: string | undefined): void {
    const connection = new ClientConnection(ws, this.logger, this.pingMs, socket);
    const connectionKey = String(++this.connectionSerial);
    const openedAt = performance.now();
    this.connections.add(connection);
    // Clients may send requests right after the socket opens, before the token is checked: they wait for it.
    const opened = this.admit(connection, token, query, clientAddress, openedAt);
    connection.on('request', (request) => {
      void this.limits.admitRequest(connectionKey).then((verdict) => {
        if (verdict === 'ok') {
          this.dispatch(connection, opened, request);
          return;
        }
        connection.respondError(request.id, new AppError('RATE_LIMITED', 'too many requests on this connection'));
        if (verdict === 'disconnect') connection.end('PROTOCOL_ABUSE', 'request flood');
      });
    });
    connection.on('close', () => {
      this.connections.delete(connection);
      this.limits.forget(connectionKey);
    });
    opened.catch((err: unknown) => {
      const appErr = isAppError(err) ? err : new AppError('INTERNAL');
      if (!isAppError(err)) this.logger.error({ err }, 'connection setup failed');
      connection.end(appErr.code, appErr.message);
    });
  }

  /** Consumes the token into a session and opens, in order, every channel it may use; rejects when the client may not stay. */
  private async admit(
    connection: ClientConnection,
    token: TokenReading,
    query: URLSearchParams,
    clientAddress: string | undefined,
    openedAt: number,
  ): Promise<Opened> {
    const { session, key, resumedPeerId } = await this.tokens.consume(token);
    if (connection.closed) throw new AppError('PEER_CLOSED');
    // The token stays here: channels have the session it proved.
    const channelQuery = new URLSearchParams(query);
    channelQuery.delete('token');
    const context: ChannelContext = {
      connection,
      session,
      clientAddress,
      query: channelQuery,
      resumedPeerId,
      openedAt,
      allowResume: (peerId) => this.tokens.allowResume(key, session, peerId),
    };
    const opened: Opened = new Map();
    for (const channel of this.channels) {
      opened.set(channel, channel.refusal(session) ?? (await channel.open(context)));
    }
    return opened;
  }

  private dispatch(connection: ClientConnection, opened: Promise<Opened>, request: ProtooRequest): void {
    opened
      .then((channels) => {
        const handler = handlerOf(channels, request.method);
        return inSpan(`signaling ${request.method}`, SpanKind.SERVER, (span) => {
          if (handler.spanAttributes) span.setAttributes(handler.spanAttributes);
          return handler.handle(request.method, request.data);
        }).then((result) => {
          connection.respond(request.id, result);
          handler.answered?.(request.method);
        });
      })
      .catch((err: unknown) => {
        if (connection.closed) return;
        if (isAppError(err)) connection.respondError(request.id, err);
        else {
          this.logger.error({ err, method: request.method }, 'request failed');
          connection.respondError(request.id, new AppError('INTERNAL'));
        }
      });
  }
}
