import { type ClientOptions, WebSocket } from 'ws';

export interface ProtooError extends Error {
  errorCode: number;
  errorName?: string;
}

type ServerRequestHandler = (method: string, data: any) => Promise<unknown> | unknown;

/** A minimal protoo client (the wire format mediasoup-demo's clients speak), for tests. */
export class ProtooClient {
  readonly notifications: { method: string; data: any }[] = [];
  closeCode?: number;
  /** The server's close reason: `"<errorName>: <text>"` for the gateway's own closes. */
  closeReason?: string;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(v: any): void; reject(e: Error): void }>();
  private readonly waiters: { method: string; resolve(d: any): void }[] = [];
  private onServerRequest: ServerRequestHandler = () => ({});
  readonly closed: Promise<number>;

  private constructor(readonly ws: WebSocket) {
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        for (const p of this.pending.values()) p.reject(new Error('socket closed'));
        resolve(code);
      }),
    );
    ws.on('message', (raw) => this.onMessage(JSON.parse(raw.toString())));
  }

  /**
   * `options.localAddress` picks the client's address (any of 127.0.0.0/8 on loopback); `protocols`
   * are the WebSocket subprotocols asked for (protoo-client asks for `protoo`, which protoo-server requires).
   */
  static connect(url: string, token: string, extra = '', options: ClientOptions = {}, protocols: string[] = []): Promise<ProtooClient> {
    const ws = new WebSocket(`${url}/?token=${encodeURIComponent(token)}${extra}`, protocols, options);
    const client = new ProtooClient(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('error', reject);
    });
  }

  handleRequests(handler: ServerRequestHandler): void {
    this.onServerRequest = handler;
  }

  request<T = any>(method: string, data: unknown = {}): Promise<T> {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ request: true, id, method, data }));
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  /** A request whose data is given as JSON text (values JSON.stringify cannot produce: 10,000 levels deep, `__proto__` keys), or absent. */
  requestText<T = any>(method: string, dataJson: string | undefined): Promise<T> {
    const id = this.nextId++;
    const data = dataJson === undefined ? '' : `,"data":${dataJson}`;
    this.ws.send(`{"request":true,"id":${id},"method":${JSON.stringify(method)}${data}}`);
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  sendRaw(text: string): void {
    this.ws.send(text);
  }

  /** Resolves with the next (or an already received, unconsumed) notification of `method`. */
  waitNotification(method: string, timeoutMs = 5000): Promise<any> {
    const index = this.notifications.findIndex((n) => n.method === method);
    if (index >= 0) return Promise.resolve(this.notifications.splice(index, 1)[0]!.data);
    return new Promise((resolve, reject) => {
      const waiter = { method, resolve };
      this.waiters.push(waiter);
      setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          reject(new Error(`no ${method} notification within ${timeoutMs} ms`));
        }
      }, timeoutMs);
    });
  }

  close(): void {
    this.ws.close();
  }

  private onMessage(msg: any): void {
    if (msg.response) {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.data);
      else {
        const err = new Error(msg.errorReason) as ProtooError;
        err.errorCode = msg.errorCode;
        err.errorName = msg.errorName;
        p.reject(err);
      }
    } else if (msg.request) {
      Promise.resolve(this.onServerRequest(msg.method, msg.data)).then(
        (data) => this.ws.send(JSON.stringify({ response: true, id: msg.id, ok: true, data: data ?? {} })),
        (err: Error) =>
          this.ws.send(JSON.stringify({ response: true, id: msg.id, ok: false, errorCode: 500, errorReason: err.message })),
      );
    } else if (msg.notification) {
      const i = this.waiters.findIndex((w) => w.method === msg.method);
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(msg.data);
      else this.notifications.push({ method: msg.method, data: msg.data });
    }
  }
}
