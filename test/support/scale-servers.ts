import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { eventually } from './faults.js';
import { freePort } from './harness.js';

// Debian's pgbouncer and haproxy, started by the tests on free loopback ports with generated
// configuration, as a deployment runs them in front of Postgres and of Tsunagi's nodes.

/** The absolute path of a server binary, or a loud failure naming the Debian package (.ci/run installs it). */
export function requireBinary(name: string): string {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin']) {
    const candidate = path.join(dir, name);
    if (dir && fs.existsSync(candidate)) return candidate;
  }
  throw new Error(`${name} is not installed: this test needs Debian's ${name} package (apt-get install ${name}; .ci/run installs it)`);
}

class ServerProcess {
  protected child: ChildProcess | undefined;
  protected output = '';
  protected exited: Promise<void> = Promise.resolve();

  protected spawn(binary: string, args: string[]): void {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const keep = (chunk: Buffer) => { this.output = (this.output + chunk.toString()).slice(-20_000); };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
  }

  protected async listening(port: number, what: string): Promise<void> {
    await eventually(async () => {
      if (this.child?.exitCode !== null) throw new Error(`${what} exited: ${this.output.slice(-2000)}`);
      return await new Promise<true | undefined>((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.once('connect', () => { socket.destroy(); resolve(true); });
        socket.once('error', () => resolve(undefined));
      });
    }, 20_000, `${what} listening on ${port}`);
  }

  /** What the server wrote (for a failing test's message). */
  get log(): string { return this.output; }

  async stop(): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      await this.exited;
    }
  }
}

/**
 * PgBouncer in transaction pooling mode in front of a real Postgres: every transaction may run on a
 * different server connection, so nothing that lives in a session (SET, session advisory locks,
 * named prepared statements on PgBouncer < 1.21, LISTEN) survives from one transaction to the next.
 * A small server pool makes the Tsunagi pools' connections share server connections for real.
 */
export class PgBouncer extends ServerProcess {
  port = 0;
  private dir = '';

  constructor(private readonly target: URL, private readonly serverPoolSize = 3) { super(); }

  /** The same database as the target, through PgBouncer. */
  get url(): string {
    const u = new URL(this.target.href);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.href;
  }

  async start(): Promise<this> {
    const binary = requireBinary('pgbouncer');
    this.port = await freePort();
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsunagi-pgbouncer-'));
    fs.chmodSync(this.dir, 0o755);
    const user = decodeURIComponent(this.target.username || 'postgres');
    const ini = path.join(this.dir, 'pgbouncer.ini');
    const userlist = path.join(this.dir, 'userlist.txt');
    fs.writeFileSync(userlist, `"${user}" "${decodeURIComponent(this.target.password)}"\n`, { mode: 0o644 });
    fs.writeFileSync(ini, [
      '[databases]',
      `* = host=${this.target.hostname} port=${this.target.port || 5432}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${this.port}`,
      'unix_socket_dir =',
      // The test's Postgres trusts loopback; a deployment uses scram-sha-256 with auth_query or auth_file.
      'auth_type = trust',
      `auth_file = ${userlist}`,
      `admin_users = ${user}`,
      'pool_mode = transaction',
      `default_pool_size = ${this.serverPoolSize}`,
      'max_client_conn = 500',
      // node-postgres sends these as startup parameters; PgBouncer 1.18 refuses unknown ones (see docs/deploy.md).
      'ignore_startup_parameters = statement_timeout,idle_in_transaction_session_timeout',
      '',
    ].join('\n'), { mode: 0o644 });
    // PgBouncer refuses to run as root (CI runs as root): then it drops to nobody.
    this.spawn(binary, [...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []), ini]);
    await this.listening(this.port, 'pgbouncer');
    return this;
  }

  override async stop(): Promise<void> {
    await super.stop();
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface HaproxyServer { name: string; port: number }
export type HaproxyStatus = 'UP' | 'DOWN' | string;

/**
 * HAProxy in front of Tsunagi nodes: round robin, a node in rotation only while GET /readyz answers
 * 200 (checked every 500 ms, two failures take it out, two successes bring it back), and a request
 * whose connection a node refused is sent to another node (retries + redispatch).
 */
export class Haproxy extends ServerProcess {
  port = 0;
  private dir = '';

  constructor(private readonly servers: HaproxyServer[]) { super(); }

  get url(): string { return `http://127.0.0.1:${this.port}`; }

  async start(): Promise<this> {
    const binary = requireBinary('haproxy');
    this.port = await freePort();
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsunagi-haproxy-'));
    const cfg = path.join(this.dir, 'haproxy.cfg');
    fs.writeFileSync(cfg, [
      'global',
      '  maxconn 1000',
      `  stats socket ${path.join(this.dir, 'admin.sock')} mode 600 level admin`,
      'defaults',
      '  mode http',
      '  timeout connect 2s',
      '  timeout client 60s',
      '  timeout server 60s',
      '  timeout http-keep-alive 10s',
      // A check answered late on a busy machine is not a dead node: only a refused or 503 one is.
      '  timeout check 5s',
      '  retries 3',
      '  option redispatch',
      'frontend tsunagi',
      `  bind 127.0.0.1:${this.port}`,
      '  default_backend nodes',
      'backend nodes',
      '  balance roundrobin',
      '  option httpchk GET /readyz',
      '  http-check expect status 200',
      '  default-server inter 500ms fastinter 500ms downinter 500ms fall 2 rise 2',
      ...this.servers.map((s) => `  server ${s.name} 127.0.0.1:${s.port} check`),
      '',
    ].join('\n'));
    this.spawn(binary, ['-db', '-f', cfg]);
    await this.listening(this.port, 'haproxy');
    return this;
  }

  /** Each server's state as HAProxy sees it (from `show stat` on the admin socket). */
  async status(): Promise<Record<string, HaproxyStatus>> {
    const csv = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(path.join(this.dir, 'admin.sock'));
      let out = '';
      socket.on('data', (c: Buffer) => { out += c.toString(); });
      socket.on('end', () => resolve(out));
      socket.on('error', reject);
      socket.write('show stat\n');
    });
    const [header = '', ...rows] = csv.split('\n');
    const columns = header.replace(/^# /, '').split(',');
    const at = (name: string) => columns.indexOf(name);
    const result: Record<string, HaproxyStatus> = {};
    for (const row of rows) {
      const cells = row.split(',');
      if (cells[at('pxname')] === 'nodes' && !['BACKEND', 'FRONTEND'].includes(cells[at('svname')] ?? '')) {
        result[cells[at('svname')] as string] = (cells[at('status')] ?? '').split(' ')[0] as string;
      }
    }
    return result;
  }

  /** Waits until HAProxy reports `name` in `status` (UP: in rotation; DOWN: taken out by the checks). */
  async waitFor(name: string, status: 'UP' | 'DOWN', withinMs = 60_000): Promise<void> {
    await eventually(async () => ((await this.status())[name] === status ? true : undefined), withinMs, `haproxy: ${name} ${status}`);
  }

  override async stop(): Promise<void> {
    await super.stop();
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
