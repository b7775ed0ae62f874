import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { freePort } from './harness.js';

// Real dependencies that a test may break: its own redis-server, and a TCP proxy in front of a real
// server that passes traffic, refuses it (a stopped server) or holds it (a frozen server: SIGSTOP).
// The shared Postgres and Redis are never stopped, frozen or flushed.

export type ProxyMode = 'pass' | 'refuse' | 'blackhole';

interface Pair { client: net.Socket; upstream: net.Socket | undefined; held: Array<[net.Socket, Buffer]> }

/**
 * A TCP proxy to host:port. 'refuse' resets every connection, open or new (a server that stopped).
 * 'blackhole' accepts but delivers nothing either way (a frozen server whose kernel still accepts);
 * back to 'pass', what was held is delivered in order, as a server resumed with SIGCONT would answer.
 */
export class FaultProxy {
  private server = net.createServer((client) => this.accept(client));
  private readonly pairs = new Set<Pair>();
  private mode: ProxyMode = 'pass';
  port = 0;

  constructor(private readonly host: string, private readonly targetPort: number) {}

  async start(): Promise<number> {
    this.port = await freePort();
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, '127.0.0.1', () => resolve());
    });
    return this.port;
  }

  setMode(mode: ProxyMode): void {
    this.mode = mode;
    for (const pair of [...this.pairs]) {
      if (mode === 'refuse') this.drop(pair);
      else if (mode === 'pass') this.release(pair);
    }
  }

  async close(): Promise<void> {
    for (const pair of [...this.pairs]) this.drop(pair);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    if (this.mode === 'refuse') { client.resetAndDestroy(); return; }
    const pair: Pair = { client, upstream: undefined, held: [] };
    this.pairs.add(pair);
    client.on('error', () => this.drop(pair));
    client.on('close', () => this.drop(pair));
    client.on('data', (chunk: Buffer) => this.forward(pair, client, chunk));
    if (this.mode === 'pass') this.connectUpstream(pair);
  }

  private connectUpstream(pair: Pair): void {
    const upstream = net.connect(this.targetPort, this.host);
    pair.upstream = upstream;
    upstream.on('error', () => this.drop(pair));
    upstream.on('close', () => this.drop(pair));
    upstream.on('data', (chunk: Buffer) => this.forward(pair, upstream, chunk));
  }

  private forward(pair: Pair, from: net.Socket, chunk: Buffer): void {
    const to = from === pair.client ? pair.upstream : pair.client;
    if (this.mode !== 'pass' || !to) { pair.held.push([from, chunk]); return; }
    to.write(chunk);
  }

  private release(pair: Pair): void {
    if (!pair.upstream) this.connectUpstream(pair);
    const held = pair.held.splice(0);
    for (const [from, chunk] of held) this.forward(pair, from, chunk);
  }

  private drop(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    pair.client.resetAndDestroy();
    pair.upstream?.destroy();
  }
}

/** Polls `probe` until it returns a value (not undefined), or fails after `withinMs`. */
export async function eventually<T>(probe: () => Promise<T | undefined>, withinMs: number, what: string): Promise<T> {
  const until = Date.now() + withinMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`${what}: not within ${withinMs} ms${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Runs `work` and returns its result with how long it took. */
export async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await work();
  return { value, ms: performance.now() - started };
}

export interface LogLine { level: number; msg: string; [field: string]: unknown }

/**
 * Tsunagi as its own process (`node --import tsx src/main.ts`), the way it runs in production: real
 * signal handling, real outbound fetch. Its JSON log lines are kept for the test to wait on.
 */
export class TsunagiProcess {
  readonly logs: LogLine[] = [];
  private readonly waiters: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  private child!: ChildProcess;
  private stderr = '';
  exited!: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  port = 0;

  get url(): string { return `http://127.0.0.1:${this.port}`; }
  get pid(): number { return this.child.pid as number; }

  /** `port`: listen there (a node restarted behind a load balancer that knows its address). */
  async start(env: Record<string, string | undefined>, port?: number): Promise<this> {
    this.port = port ?? await freePort();
    this.logs.length = 0;
    this.stderr = '';
    const { NODE_OPTIONS: _jestOnly, ...inherited } = process.env;
    const fullEnv = {
      ...inherited,
      NODE_ENV: 'test', LOG_LEVEL: 'info', HOST: '127.0.0.1', PORT: String(this.port), ISSUER: `http://127.0.0.1:${this.port}`,
      DATA_DIR: 'memory://', REDIS_KEY_PREFIX: `tsunagi-proc-${process.pid}-${Math.random().toString(36).slice(2, 8)}:`,
      ...env,
    };
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: new URL('../..', import.meta.url).pathname,
      env: Object.fromEntries(Object.entries(fullEnv).filter((e): e is [string, string] => e[1] !== undefined)),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, at: performance.now() })));
    let pending = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const text of lines) {
        let line: LogLine;
        try { line = JSON.parse(text) as LogLine; } catch { continue; }
        this.logs.push(line);
        for (const w of [...this.waiters]) {
          if (w.match(line)) { this.waiters.splice(this.waiters.indexOf(w), 1); w.resolve(line); }
        }
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => { this.stderr += chunk.toString(); });
    const started = this.waitForLog((l) => l.msg.startsWith('Tsunagi is listening'), 150_000);
    const failed = this.exited.then(({ code }) => { throw new Error(`Tsunagi exited (${code}) before listening: ${this.stderr.slice(-2000)}`); });
    await Promise.race([started, failed]);
    return this;
  }

  waitForLog(match: (l: LogLine) => boolean, withinMs: number): Promise<LogLine> {
    const seen = this.logs.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no such log line within ${withinMs} ms; stderr: ${this.stderr.slice(-1000)}`)), withinMs);
      this.waiters.push({ match, resolve: (l) => { clearTimeout(timer); resolve(l); } });
    });
  }

  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** Ends the process if a test left it running. */
  async stop(): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}
