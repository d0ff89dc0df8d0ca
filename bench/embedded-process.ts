import { randomBytes } from 'node:crypto';
import { RoleProcess, freePort } from '../test/helpers/cluster.js';
import { buildMAuthHeader } from '../src/core/mauth.js';

/**
 * The embedded platform as its own OS process (as `npm start` runs it), so a
 * benchmark's load generator does not share its event loop or CPU account.
 * Rate limits are off: benchmarks measure capacity, not policy.
 */
export class EmbeddedProcess {
  readonly superService = { id: randomBytes(12).toString('hex'), key: randomBytes(24).toString('base64url') };
  readonly opsToken = randomBytes(24).toString('base64url');
  proc!: RoleProcess;
  nuveUrl = '';
  gatewayUrl = '';

  async start(extraEnv: Record<string, string> = {}): Promise<void> {
    const nuvePort = await freePort();
    const gatewayPort = await freePort();
    this.proc = new RoleProcess('all', {
      MSS_LOG__LEVEL: 'warn',
      MSS_STORE__SQLITE_PATH: ':memory:',
      MSS_NUVE__PORT: String(nuvePort),
      MSS_GATEWAY__PORT: String(gatewayPort),
      MSS_NUVE__SUPER_SERVICE__ID: this.superService.id,
      MSS_NUVE__SUPER_SERVICE__KEY: this.superService.key,
      MSS_OPS__TOKEN: this.opsToken,
      MSS_NUVE__TOKEN_TTL_SEC: '3600',
      MSS_NUVE__RATE_LIMIT__ENABLED: 'false',
      MSS_GATEWAY__RATE_LIMIT__ENABLED: 'false',
      MSS_AGENT__NUM_WORKERS: '1',
      MSS_AGENT__WEB_RTC_BASE_PORT: String(46000 + (process.pid % 1000)),
      MSS_AGENT__PLAIN_RTP_MIN_PORT: '41000',
      MSS_AGENT__PLAIN_RTP_MAX_PORT: '42999',
      ...extraEnv,
    });
    await this.proc.start();
    this.nuveUrl = `http://127.0.0.1:${nuvePort}`;
    this.gatewayUrl = `ws://127.0.0.1:${gatewayPort}`;
  }

  private auth(extra: { username?: string; role?: string } = {}): string {
    return buildMAuthHeader({ serviceId: this.superService.id, key: this.superService.key, cnonce: randomBytes(8).toString('hex'), ...extra });
  }

  async createRoom(name: string): Promise<string> {
    const res = await fetch(`${this.nuveUrl}/rooms`, {
      method: 'POST',
      headers: { authorization: this.auth(), 'content-type': 'application/json' },
      body: JSON.stringify({ name }),
    });
    return ((await res.json()) as { _id: string })._id;
  }

  async token(roomId: string, user: string): Promise<string> {
    const res = await fetch(`${this.nuveUrl}/rooms/${roomId}/tokens`, {
      method: 'POST',
      headers: { authorization: this.auth({ username: user, role: 'presenter' }) },
    });
    return res.text();
  }

  /** One sample from the process's own metrics (e.g. mss_process_resident_memory_bytes). */
  async metric(name: string): Promise<number> {
    const text = await (await fetch(`${this.nuveUrl}/metrics`, { headers: { authorization: `Bearer ${this.opsToken}` } })).text();
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
    return m ? Number(m[1]) : NaN;
  }

  async stop(): Promise<void> {
    // Profiling (BENCH_CPU_PROF_DIR): the profile is written when the process exits by itself, after SIGTERM's drain.
    if (process.env.BENCH_CPU_PROF_DIR) {
      const exited = this.proc.exited();
      this.proc.signal('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
    }
    await this.proc.kill('SIGKILL');
  }
}
