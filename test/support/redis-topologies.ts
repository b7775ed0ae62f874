// Redis as it is deployed beyond one server, started by the test on free loopback ports in a
// temporary folder, and stopped (and the folder removed) afterwards: a Sentinel set (one primary,
// one replica, three sentinels) and a Redis Cluster of three masters. Debian's `redis-server`,
// `redis-sentinel` and `redis-cli` (packages redis-server, redis-sentinel, redis-tools); a missing
// one fails the test loudly instead of skipping it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { eventually } from './faults.js';
import { freePort } from './harness.js';

const INSTALL_HINT: Record<string, string> = {
  'redis-server': 'apt-get install redis-server',
  'redis-sentinel': 'apt-get install redis-sentinel',
  'redis-cli': 'apt-get install redis-tools',
};

function requireBinary(name: string): void {
  const found = spawnSync(name, ['--version'], { encoding: 'utf8' });
  if (found.error || found.status !== 0) {
    throw new Error(`${name} is not on PATH: this test starts real Redis servers of its own. `
      + `Install it (Debian/Ubuntu: \`${INSTALL_HINT[name] ?? `apt-get install ${name}`}\`; macOS: \`brew install redis\`).`);
  }
}

/**
 * A free loopback port. With TEST_PORT_RANGE=7000-7099 (a shared machine where each user has a range
 * of ports) only from that range; otherwise any port the system hands out.
 */
export async function freePortInRange(taken: Set<number> = new Set()): Promise<number> {
  const range = /^(\d+)-(\d+)$/.exec(process.env.TEST_PORT_RANGE ?? '');
  if (!range) {
    for (;;) {
      const port = await freePort();
      if (!taken.has(port)) { taken.add(port); return port; }
    }
  }
  for (let port = Number(range[1]); port <= Number(range[2]); port++) {
    if (taken.has(port)) continue;
    if (await canListen(port)) { taken.add(port); return port; }
  }
  throw new Error(`no free port left in TEST_PORT_RANGE=${process.env.TEST_PORT_RANGE}`);
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** One command over a raw connection (no client library: nothing of the app's is involved); the reply as RESP text. */
export async function rawCommand(port: number, ...args: string[]): Promise<string> {
  return rawCommandAs(port, undefined, ...args);
}

/** The same, after AUTH with `password` when there is one. */
export async function rawCommandAs(port: number, password: string | undefined, ...args: string[]): Promise<string> {
  const commands = password === undefined ? [args] : [['AUTH', password], args];
  const socket = net.connect(port, '127.0.0.1');
  const payload = commands.map((c) => `*${c.length}\r\n${c.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`).join('');
  return new Promise((resolve, reject) => {
    let reply = Buffer.alloc(0);
    socket.setTimeout(5000, () => { socket.destroy(); reject(new Error(`no reply from 127.0.0.1:${port} to ${args[0]}`)); });
    socket.on('data', (chunk: Buffer) => {
      reply = Buffer.concat([reply, chunk]);
      // The reply to AUTH first (when sent), then the one asked for.
      const ends: number[] = [];
      for (let at: number | undefined = 0; ends.length < commands.length && at !== undefined;) {
        at = endOfReply(reply, at);
        if (at !== undefined) ends.push(at);
      }
      if (ends.length < commands.length) return;
      socket.end();
      resolve(reply.subarray(ends.length > 1 ? ends[0] : 0).toString());
    });
    socket.on('error', reject);
    socket.write(payload);
  });
}

/** Where the RESP2 reply starting at `at` ends, or undefined while it is incomplete. */
function endOfReply(buf: Buffer, at: number): number | undefined {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return undefined;
  const type = String.fromCharCode(buf[at] as number);
  const n = Number(buf.subarray(at + 1, eol).toString());
  if (type === '$') return n < 0 ? eol + 2 : (buf.length >= eol + 2 + n + 2 ? eol + 2 + n + 2 : undefined);
  if (type === '*') {
    let next: number | undefined = eol + 2;
    for (let i = 0; i < n && next !== undefined; i++) next = endOfReply(buf, next);
    return next;
  }
  return eol + 2; // + - :
}

/** A redis-server or redis-sentinel process of the test's own. */
class RedisProcess {
  private child: ChildProcess | undefined;
  private output = '';

  constructor(readonly binary: string, readonly port: number, private readonly args: string[], readonly password?: string) {}

  /** One command to this server (authenticated when it has a password). */
  command(...args: string[]): Promise<string> {
    return rawCommandAs(this.port, this.password, ...args);
  }

  get address(): string { return `127.0.0.1:${this.port}`; }
  get running(): boolean { return this.child !== undefined; }

  async start(): Promise<void> {
    const child = spawn(this.binary, this.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const keep = (chunk: Buffer) => { this.output = (this.output + chunk.toString()).slice(-20_000); };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    let exited = false;
    child.once('exit', () => { exited = true; });
    await eventually(async () => {
      if (exited) throw new Error(`${this.binary} on port ${this.port} exited:\n${this.output}`);
      return (await this.command('PING').catch(() => '')).startsWith('+PONG') ? true : undefined;
    }, 30_000, `${this.binary} answering on port ${this.port}`).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${this.output}`);
    });
  }

  /** SIGKILL, as a crash or a lost machine would: no shutdown, no last words to the replicas. */
  async kill(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }
}

function serverArgs(port: number, dir: string, extra: string[] = []): string[] {
  return ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'no', '--loglevel', 'warning', ...extra];
}

/**
 * One primary, one replica and three sentinels (quorum 2) watching them under `masterName`. The
 * sentinels judge the primary down after one second without an answer, so a failover takes a few
 * seconds rather than the default 30. Password-protected as production would be: the servers with
 * `password`, the sentinels with `sentinelPassword` of their own.
 */
export class RedisSentinelSet {
  readonly masterName = 'tsunagi-primary';
  static readonly password = `data-${Math.random().toString(36).slice(2)}`;
  static readonly sentinelPassword = `sentinel-${Math.random().toString(36).slice(2)}`;
  private constructor(
    private readonly dir: string,
    readonly primary: RedisProcess,
    readonly replica: RedisProcess,
    readonly sentinels: RedisProcess[],
  ) {}

  /** REDIS_SENTINELS / REDIS_SENTINEL_MASTER for Tsunagi (and REDIS_URL blank: the shared Redis is not used). */
  get env(): Record<string, string> {
    return {
      REDIS_URL: '', REDIS_SENTINELS: this.sentinels.map((s) => s.address).join(','), REDIS_SENTINEL_MASTER: this.masterName,
      REDIS_PASSWORD: RedisSentinelSet.password, REDIS_SENTINEL_PASSWORD: RedisSentinelSet.sentinelPassword,
    };
  }

  static async start(): Promise<RedisSentinelSet> {
    requireBinary('redis-server');
    requireBinary('redis-sentinel');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsunagi-sentinel-'));
    const taken = new Set<number>();
    const [primaryPort, replicaPort, ...sentinelPorts] = await Promise.all(Array.from({ length: 5 }, () => freePortInRange(taken)));
    const sub = (name: string) => { const d = path.join(dir, name); fs.mkdirSync(d); return d; };
    const { password, sentinelPassword } = RedisSentinelSet;
    // masterauth on both: either may be the replica after a failover.
    const auth = ['--requirepass', password, '--masterauth', password];
    const primary = new RedisProcess('redis-server', primaryPort as number, serverArgs(primaryPort as number, sub('primary'), auth), password);
    const replica = new RedisProcess('redis-server', replicaPort as number, serverArgs(replicaPort as number, sub('replica'), [...auth, '--replicaof', '127.0.0.1', String(primaryPort)]), password);
    const sentinels = sentinelPorts.map((port, i) => {
      // Sentinel rewrites its configuration file as it learns the topology: each has its own.
      const conf = path.join(sub(`sentinel-${i}`), 'sentinel.conf');
      fs.writeFileSync(conf, [
        `port ${port}`, 'bind 127.0.0.1', 'protected-mode no', `dir ${path.dirname(conf)}`, 'loglevel warning',
        `sentinel monitor tsunagi-primary 127.0.0.1 ${primaryPort} 2`,
        'sentinel down-after-milliseconds tsunagi-primary 1000',
        'sentinel failover-timeout tsunagi-primary 5000',
        'sentinel parallel-syncs tsunagi-primary 1',
        `sentinel auth-pass tsunagi-primary ${password}`,
        // The sentinels' own password, which they also use with each other.
        `requirepass ${sentinelPassword}`, `sentinel sentinel-pass ${sentinelPassword}`,
        '',
      ].join('\n'));
      return new RedisProcess('redis-sentinel', port, [conf], sentinelPassword);
    });
    const set = new RedisSentinelSet(dir, primary, replica, sentinels);
    try {
      await primary.start();
      await replica.start();
      await eventually(async () => (/master_link_status:up/.test(await replica.command('INFO', 'replication')) ? true : undefined), 30_000, 'the replica in sync with the primary');
      for (const sentinel of sentinels) await sentinel.start();
      // A failover needs the sentinels to know the replica and each other (learned within seconds).
      await eventually(async () => {
        for (const sentinel of sentinels) {
          const replicas = await sentinel.command('SENTINEL', 'REPLICAS', 'tsunagi-primary');
          const peers = await sentinel.command('SENTINEL', 'SENTINELS', 'tsunagi-primary');
          if (!replicas.includes(String(replica.port)) || (peers.match(/\r\nname\r\n/g) ?? []).length < 2) return undefined;
        }
        return true;
      }, 60_000, 'three sentinels that know the replica and each other');
    } catch (err) {
      await set.stop();
      throw err;
    }
    return set;
  }

  /** The port the sentinels name as primary now (from the first sentinel that answers). */
  async primaryPortNow(): Promise<number> {
    for (const sentinel of this.sentinels) {
      const reply = await sentinel.command('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', this.masterName).catch(() => '');
      const port = /\r\n(\d+)\r\n$/.exec(reply)?.[1];
      if (port) return Number(port);
    }
    throw new Error('no sentinel answered');
  }

  /** Resolves once every sentinel names the replica as the primary. */
  async replicaPromoted(withinMs: number): Promise<void> {
    await eventually(async () => {
      for (const sentinel of this.sentinels) {
        const reply = await sentinel.command('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', this.masterName);
        if (!reply.includes(`\r\n${this.replica.port}\r\n`)) return undefined;
      }
      return /role:master/.test(await this.replica.command('INFO', 'replication')) ? true : undefined;
    }, withinMs, 'Sentinel promoting the replica');
  }

  async stop(): Promise<void> {
    for (const p of [...this.sentinels, this.replica, this.primary]) await p.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A Redis Cluster of three masters without replicas, every slot assigned, created with redis-cli. */
export class RedisClusterSet {
  private constructor(private readonly dir: string, readonly nodes: RedisProcess[]) {}

  /** REDIS_CLUSTER_NODES for Tsunagi: one seed node, the client discovers the others (REDIS_URL blank). */
  get env(): Record<string, string> {
    return { REDIS_URL: '', REDIS_CLUSTER_NODES: this.nodes[0]?.address ?? '' };
  }

  static async start(): Promise<RedisClusterSet> {
    requireBinary('redis-server');
    requireBinary('redis-cli');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsunagi-cluster-'));
    const taken = new Set<number>();
    const ports = await Promise.all(Array.from({ length: 6 }, () => freePortInRange(taken)));
    const nodes = [0, 1, 2].map((i) => {
      const port = ports[2 * i] as number;
      const nodeDir = path.join(dir, `node-${i}`);
      fs.mkdirSync(nodeDir);
      // The bus port is set explicitly: the default (port + 10000) may be taken or beyond 65535.
      return new RedisProcess('redis-server', port, serverArgs(port, nodeDir, [
        '--cluster-enabled', 'yes', '--cluster-config-file', path.join(nodeDir, 'nodes.conf'),
        '--cluster-port', String(ports[2 * i + 1]), '--cluster-node-timeout', '2000',
      ]));
    });
    const set = new RedisClusterSet(dir, nodes);
    try {
      for (const node of nodes) await node.start();
      const created = spawnSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => n.address), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 60_000 });
      if (created.status !== 0) throw new Error(`redis-cli --cluster create failed:\n${created.stdout}\n${created.stderr}`);
      await eventually(async () => {
        for (const node of nodes) if (!/cluster_state:ok/.test(await rawCommand(node.port, 'CLUSTER', 'INFO'))) return undefined;
        return true;
      }, 60_000, 'cluster_state:ok on every node');
    } catch (err) {
      await set.stop();
      throw err;
    }
    return set;
  }

  /** How many keys each master holds. */
  async keysPerNode(): Promise<number[]> {
    return Promise.all(this.nodes.map(async (n) => Number(/:(\d+)/.exec(await rawCommand(n.port, 'DBSIZE'))?.[1] ?? NaN)));
  }

  async stop(): Promise<void> {
    for (const n of this.nodes) await n.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
