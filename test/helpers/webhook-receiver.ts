import { type IncomingHttpHeaders, type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { WebhookEvent } from '../../src/core/room-events.js';

export interface Received {
  raw: string;
  body: WebhookEvent;
  headers: IncomingHttpHeaders;
  at: number;
}

/**
 * A tenant's webhook endpoint for tests: records every POST, answers with `status` (after
 * `delayMs`), and can go down (its port refuses connections) and come back on the same URL.
 */
export class WebhookReceiver {
  /** Answered 2xx, in arrival order. */
  readonly accepted: Received[] = [];
  /** Every POST, whatever the answer. */
  attempts = 0;
  status = 200;
  /** Extra headers of every answer (a redirect's Location). */
  headers: Record<string, string> = {};
  delayMs = 0;
  /** Most POSTs for one room in progress at once. */
  maxConcurrentPerRoom = 0;
  private readonly inProgress = new Map<string, number>();
  private server: Server;
  private port = 0;

  private constructor() {
    this.server = this.create();
  }

  static async start(): Promise<WebhookReceiver> {
    const receiver = new WebhookReceiver();
    await receiver.listen();
    return receiver;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/hook`;
  }

  private create(): Server {
    return createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.attempts++;
        const raw = Buffer.concat(chunks).toString('utf8');
        const body = JSON.parse(raw) as WebhookEvent;
        const room = body.room.id;
        const now = (this.inProgress.get(room) ?? 0) + 1;
        this.inProgress.set(room, now);
        this.maxConcurrentPerRoom = Math.max(this.maxConcurrentPerRoom, now);
        const status = this.status;
        setTimeout(() => {
          this.inProgress.set(room, (this.inProgress.get(room) ?? 1) - 1);
          if (status >= 200 && status < 300) this.accepted.push({ raw, body, headers: req.headers, at: Date.now() });
          res.writeHead(status, this.headers).end();
        }, this.delayMs);
      });
    });
  }

  private listen(): Promise<void> {
    return new Promise((resolve) =>
      this.server.listen(this.port, '127.0.0.1', () => {
        this.port = (this.server.address() as AddressInfo).port;
        resolve();
      }),
    );
  }

  /** Stops listening: deliveries meet a refused connection. */
  async down(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server = this.create();
  }

  /** Listens again on the same port. */
  up(): Promise<void> {
    return this.listen();
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
