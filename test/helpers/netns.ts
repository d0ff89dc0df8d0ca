import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { requireBinary } from './services.js';

const run = promisify(execFile);
const DELAY_LINE = fileURLToPath(new URL('./delay-line.py', import.meta.url));
const FORWARDING = '/proc/sys/net/ipv4/ip_forward';

/**
 * A network namespace one routed hop away from the root namespace, over a
 * link whose one-way delay the test sets (and changes, or cuts) at will:
 * where an agent runs "far" from the client, which stays in the root
 * namespace. The link is a pair of TUN devices joined by delay-line.py,
 * because this machine's kernel has no sch_netem for `tc qdisc ... netem`.
 * Namespaces reach each other through the root namespace, which forwards.
 */
export class DelayedNamespace {
  private static forwardingBefore?: string;
  private static open = 0;

  readonly name: string;
  /** The root namespace's end of the link, and the namespace's own address. */
  readonly rootIp: string;
  readonly ip: string;
  private readonly rootDev: string;
  private readonly nsDev: string;
  private line?: ChildProcess;
  private replies: ((line: string) => void)[] = [];

  private constructor(index: number) {
    const tag = `${process.pid % 100_000}x${index}`;
    this.name = `mss-${tag}`;
    this.rootDev = `mr${tag}`;
    this.nsDev = `mn${tag}`;
    this.rootIp = `10.213.${index}.1`;
    this.ip = `10.213.${index}.2`;
  }

  /** A namespace whose set-up failed is taken down again (delay line included) before the error is thrown. */
  static async create(index: number, delayMs: number): Promise<DelayedNamespace> {
    const ns = new DelayedNamespace(index);
    try {
      await ns.setUp(delayMs);
    } catch (err) {
      await ns.close().catch(() => undefined);
      throw err;
    }
    return ns;
  }

  private async setUp(delayMs: number): Promise<void> {
    const python = requireBinary('python3');
    requireBinary('ip');
    if (DelayedNamespace.open++ === 0) {
      DelayedNamespace.forwardingBefore = (await readFile(FORWARDING, 'utf8')).trim();
      await writeFile(FORWARDING, '1');
    }
    const line = spawn(python, [DELAY_LINE, this.rootDev, this.nsDev, String(delayMs)], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.line = line;
    line.on('error', (err) => this.replies.shift()?.(`error: ${err.message}`));
    line.on('exit', (code, signal) => {
      // Whoever waits for an answer hears that the line is gone, instead of waiting for nothing.
      for (const reply of this.replies.splice(0)) reply(`delay line exited (${code ?? signal})`);
    });
    let buffered = '';
    line.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const text = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        this.replies.shift()?.(text);
      }
    });
    const ready = await this.reply();
    if (!ready.startsWith('ready')) throw new Error(`delay line: ${ready}`);
    await run('ip', ['netns', 'add', this.name]);
    await run('ip', ['link', 'set', this.nsDev, 'netns', this.name]);
    await run('ip', ['addr', 'add', this.rootIp, 'peer', this.ip, 'dev', this.rootDev]);
    await run('ip', ['link', 'set', this.rootDev, 'up']);
    const inNs = (...args: string[]) => run('ip', ['netns', 'exec', this.name, 'ip', ...args]);
    await inNs('link', 'set', 'lo', 'up');
    await inNs('addr', 'add', this.ip, 'peer', this.rootIp, 'dev', this.nsDev);
    await inNs('link', 'set', this.nsDev, 'up');
    await inNs('route', 'add', 'default', 'dev', this.nsDev);
  }

  private reply(): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('delay line did not answer')), 5000);
      this.replies.push((text) => {
        clearTimeout(timer);
        resolve(text);
      });
    });
  }

  private async command(text: string): Promise<void> {
    const answer = this.reply();
    this.line!.stdin!.write(`${text}\n`);
    if ((await answer) !== 'ok') throw new Error(`delay line refused "${text}"`);
  }

  /** One-way delay, both directions (a round trip costs twice this). */
  setDelay(ms: number): Promise<void> {
    return this.command(`delay ${ms}`);
  }

  /** The link goes silent: every packet either way is lost, as in a partition. */
  cut(): Promise<void> {
    return this.command('drop');
  }

  restore(): Promise<void> {
    return this.command('pass');
  }

  async close(): Promise<void> {
    const line = this.line;
    if (line && line.exitCode === null && line.signalCode === null && line.pid !== undefined) {
      const exited = new Promise((r) => line.once('exit', r));
      line.stdin!.end(); // it exits when its stdin closes
      const timer = setTimeout(() => line.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await run('ip', ['netns', 'del', this.name]).catch(() => undefined);
    if (--DelayedNamespace.open === 0 && DelayedNamespace.forwardingBefore !== undefined) {
      await writeFile(FORWARDING, DelayedNamespace.forwardingBefore);
    }
  }
}
