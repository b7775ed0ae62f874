// A redis-server of the test's own, on a free loopback port, for tests that flush, kill or restart
// Redis: the shared Redis of CI and of the other helpers' test files is never touched.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './harness.js';

const READY_LINE = /Ready to accept connections/;

/** Fails loudly (not a skip) when redis-server is missing: the test needs a Redis it may destroy. */
function requireRedisServerBinary(): void {
  const found = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (found.error || found.status !== 0) {
    throw new Error('redis-server is not on PATH: this test starts (and kills) a Redis of its own. '
      + 'Install it (Debian/Ubuntu: `apt-get install redis-server`; macOS: `brew install redis`).');
  }
}

export class DisposableRedis {
  private child: ChildProcess | undefined;
  private readonly dir: string;

  private constructor(readonly port: number) {
    // Its own working folder, and no persistence: a restart always comes back empty.
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsunagi-redis-'));
  }

  get url(): string { return `redis://127.0.0.1:${this.port}`; }

  static async start(): Promise<DisposableRedis> {
    requireRedisServerBinary();
    const redis = new DisposableRedis(await freePort());
    await redis.launch();
    return redis;
  }

  /** Starts redis-server (again) on the same port and resolves when it accepts connections. */
  async launch(): Promise<void> {
    if (this.child) throw new Error('this Redis is already running');
    const child = spawn('redis-server', [
      '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', this.dir, '--protected-mode', 'no', '--loglevel', 'notice',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (READY_LINE.test(output)) { cleanup(); resolve(); }
      };
      const onExit = (code: number | null) => { cleanup(); reject(new Error(`redis-server exited (${code}) before it was ready:\n${output}`)); };
      const cleanup = () => { child.stdout?.off('data', onData); child.off('exit', onExit); };
      child.stdout?.on('data', onData);
      child.on('exit', onExit);
    });
    // Keep draining its output so a full pipe never blocks it.
    child.stdout?.resume();
    child.stderr?.resume();
  }

  /** SIGKILL, as a crash would: no shutdown save (there is no persistence anyway). */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }

  /** One command over a raw connection (no client library, so nothing of the app's is involved). */
  async command(...args: string[]): Promise<string> {
    const socket = net.connect(this.port, '127.0.0.1');
    const payload = `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
    return new Promise((resolve, reject) => {
      let reply = '';
      socket.on('data', (chunk: Buffer) => {
        reply += chunk.toString();
        if (reply.endsWith('\r\n')) { socket.end(); resolve(reply.trim()); }
      });
      socket.on('error', reject);
      socket.write(payload);
    });
  }

  async stop(): Promise<void> {
    await this.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
