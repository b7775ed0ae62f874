import { createClient, createCluster, createSentinel, ErrorReply, MultiErrorReply } from 'redis';
import { DependencyUnavailable, withDeadline } from '../failures/dependency.js';
import { outsideRequests } from './outside-requests.js';
import { REDIS_SCRIPTS } from './redis-scripts.js';

export interface RedisNodeAddress { host: string; port: number }
export interface RedisCredentials { username?: string; password?: string }

/**
 * Where Redis is: one server (REDIS_URL), a primary found through Sentinel (REDIS_SENTINELS +
 * REDIS_SENTINEL_MASTER), or a Redis Cluster (REDIS_CLUSTER_NODES, a few nodes to discover it from).
 */
export type RedisSettings =
  | { topology: 'single'; url: string }
  | { topology: 'sentinel'; sentinels: RedisNodeAddress[]; masterName: string; credentials: RedisCredentials; sentinelCredentials: RedisCredentials }
  | { topology: 'cluster'; nodes: RedisNodeAddress[]; credentials: RedisCredentials };

export type RedisTopology = RedisSettings['topology'];

export interface RedisTimeouts {
  /** Deadline of one command (or one MULTI/EXEC), from the call to the reply. */
  commandTimeoutMs: number;
  /** Deadline of opening the TCP connection (each reconnect attempt too). */
  connectTimeoutMs: number;
}

export const DEFAULT_REDIS_TIMEOUTS: RedisTimeouts = { commandTimeoutMs: 2000, connectTimeoutMs: 2000 };

/** What the Redis client reports about its topology (a new Sentinel primary, a lost node). */
export type RedisEventLog = (event: { redis: RedisTopology; change: string; node?: string }) => void;

// The three kinds of client share the commands Tsunagi uses (single-key commands, MULTI on one key,
// the scripts of redis-scripts.ts), so the stores are written once against their union.
function singleClient(url: string, timeouts: RedisTimeouts) {
  return createClient({ url, scripts: REDIS_SCRIPTS, ...nodeOptions(timeouts) });
}

function sentinelClient(settings: Extract<RedisSettings, { topology: 'sentinel' }>, timeouts: RedisTimeouts) {
  return createSentinel({
    name: settings.masterName,
    sentinelRootNodes: settings.sentinels,
    scripts: REDIS_SCRIPTS,
    // Every command goes to the primary: a replica may lag behind it, and a code must not be found
    // again after it was consumed.
    replicaPoolSize: 0,
    nodeClientOptions: { ...nodeOptions(timeouts), ...settings.credentials },
    sentinelClientOptions: { ...nodeOptions(timeouts), ...settings.sentinelCredentials },
  });
}

function clusterClient(settings: Extract<RedisSettings, { topology: 'cluster' }>, timeouts: RedisTimeouts) {
  return createCluster({
    rootNodes: settings.nodes.map(({ host, port }) => ({ socket: { host, port } })),
    scripts: REDIS_SCRIPTS,
    defaults: { ...nodeOptions(timeouts), ...settings.credentials },
    // Reads too go to the primary of the key's slot (see sentinelClient).
    useReplicas: false,
  });
}

/**
 * Each connection fails fast when its server is away: no offline queue (commands issued during an
 * outage are refused, never replayed into the Redis that comes back), a deadline on each connection
 * attempt and on each command, and reconnection with capped, jittered backoff forever.
 */
function nodeOptions(timeouts: RedisTimeouts) {
  return {
    disableOfflineQueue: true,
    // Also bounds a command that waits to be written (a connection that is still being set up).
    commandOptions: { timeout: timeouts.commandTimeoutMs },
    socket: {
      connectTimeout: timeouts.connectTimeoutMs,
      keepAlive: true,
      reconnectStrategy: (retries: number) => Math.min(100 * 2 ** Math.min(retries, 5), 2000) + Math.floor(Math.random() * 100),
    },
  };
}

export type RedisConnection = ReturnType<typeof singleClient> | ReturnType<typeof sentinelClient> | ReturnType<typeof clusterClient>;

const topologies = new WeakMap<object, RedisTopology>();

/** The topology a connection from openRedis was opened on. */
export function topologyOf(redis: RedisConnection): RedisTopology {
  return topologies.get(redis) ?? 'single';
}

/**
 * Opens Redis in any of its topologies. A failure to reach Redis (its connection down, a command
 * past its deadline, a Sentinel failover or a Cluster resharding in progress) surfaces as
 * DependencyUnavailable('redis'), answered with 503 + Retry-After; Redis' other error replies (a
 * wrong type, a script error, CROSSSLOT) are bugs and pass through unchanged.
 */
export async function openRedis(settings: RedisSettings | string, timeouts: RedisTimeouts = DEFAULT_REDIS_TIMEOUTS, onEvent: RedisEventLog = () => {}): Promise<RedisConnection> {
  const where: RedisSettings = typeof settings === 'string' ? { topology: 'single', url: settings } : settings;
  let client: RedisConnection;
  switch (where.topology) {
    case 'single': client = singleClient(where.url, timeouts); break;
    case 'sentinel': {
      const sentinel = sentinelClient(where, timeouts);
      // Sentinel announces a failover on its pub/sub channel; the client then connects to the new primary.
      sentinel.on('topology-change', (event: { type: string; node?: RedisNodeAddress }) => {
        onEvent({ redis: 'sentinel', change: event.type, ...(event.node ? { node: `${event.node.host}:${event.node.port}` } : {}) });
      });
      client = sentinel;
      break;
    }
    case 'cluster': client = clusterClient(where, timeouts); break;
  }
  // Without a listener an 'error' event would end the process; the client reconnects, readiness reports it.
  client.on('error', () => {});
  await client.connect();
  const guarded = withCommandDeadlines(client, timeouts.commandTimeoutMs);
  topologies.set(guarded, where.topology);
  return guarded;
}

/**
 * Readiness: every primary Tsunagi's keys may live on answers. One server or the Sentinel primary:
 * a PING through the client (which follows a failover). A Cluster: a PING to each master in the
 * client's slot map, and the cluster's own verdict that every slot is served (cluster_state:ok).
 */
export async function checkRedis(redis: RedisConnection): Promise<void> {
  if (!isCluster(redis)) {
    await redis.ping();
    return;
  }
  const masters = redis.masters;
  if (masters.length === 0) throw new DependencyUnavailable('redis', 'the cluster has no known master');
  await Promise.all(masters.map(async (master, i) => {
    const node = await redis.nodeClient(master);
    if (i > 0) return void await node.ping();
    const info = await node.clusterInfo();
    if (!/cluster_state:ok/.test(String(info))) throw new DependencyUnavailable('redis', 'cluster_state is not ok');
  }));
}

/**
 * Closes the connection(s) once the replies still due have come, or at once after `ms` (a Redis, or
 * every sentinel, that does not answer must not keep a process from exiting).
 */
export async function closeRedis(redis: RedisConnection, ms: number): Promise<void> {
  try {
    await withDeadline(redis.close(), ms, 'redis close');
  } catch {
    // A Sentinel client's destroy waits for a discovery round in progress: not worth waiting for.
    void Promise.resolve().then(() => redis.destroy()).catch(() => undefined);
  }
}

export type RedisClusterConnection = ReturnType<typeof clusterClient>;

export function isCluster(redis: RedisConnection): redis is RedisClusterConnection {
  return topologyOf(redis) === 'cluster';
}

/** A plain client: one server, where commands over the whole keyspace (SCAN) see every key. */
export function asSingleServer(redis: RedisConnection): ReturnType<typeof singleClient> | undefined {
  return topologyOf(redis) === 'single' ? redis as ReturnType<typeof singleClient> : undefined;
}

// node-redis' command timeout only covers the wait before a command is written: one that was sent to
// a Redis that stopped answering (frozen, or a network that drops packets) waits for its reply with
// no end, and a Sentinel client waits for a failover to finish. Every promise a command returns is
// raced against the deadline here instead.
// node-redis arms a timer for each command (AbortSignal.timeout, REDIS_COMMAND_TIMEOUT_MS) that lives
// until a GC after it is answered: commands are issued outside the request (outside-requests.ts).
const NOT_COMMANDS = new Set<PropertyKey>(['connect', 'quit', 'close', 'destroy', 'disconnect', 'on', 'once', 'off', 'addListener', 'removeListener', 'removeAllListeners', 'emit', 'duplicate', 'scanIterator']);

function withCommandDeadlines<T extends object>(target: T, ms: number): T {
  const proxy: T = new Proxy(target, {
    get(obj, prop) {
      const value: unknown = Reflect.get(obj, prop, obj);
      if (typeof value !== 'function') return value;
      // node-redis methods read private fields: they run on the client itself, never on the proxy.
      if (NOT_COMMANDS.has(prop)) return (value as (...a: unknown[]) => unknown).bind(obj);
      return (...args: unknown[]) => {
        const result: unknown = outsideRequests(() => (value as (...a: unknown[]) => unknown).apply(obj, args));
        if (result === obj) return proxy; // chained calls (multi().incr().pExpire()) keep the deadline
        if (result instanceof Promise) return guard(result, ms, String(prop));
        // MULTI: the queued commands run at exec().
        if (typeof result === 'object' && result !== null && typeof (result as { exec?: unknown }).exec === 'function') return withCommandDeadlines(result, ms);
        return result;
      };
    },
  });
  return proxy;
}

// Error replies that mean "this Redis cannot serve now", not "this command is wrong": a replica
// that was a primary (READONLY), a server loading its data, a primary without its replicas
// (MASTERDOWN, NOREPLICAS), a cluster with unserved slots or moving them (CLUSTERDOWN, TRYAGAIN, and
// MOVED/ASK once the client's redirections are used up).
const UNAVAILABLE_REPLY = /^(READONLY|LOADING|MASTERDOWN|NOREPLICAS|CLUSTERDOWN|TRYAGAIN|MOVED|ASK)\b/;

export function isRedisUnavailableReply(err: ErrorReply): boolean {
  if (err instanceof MultiErrorReply) return [...err.errors()].some((e) => e instanceof ErrorReply && isRedisUnavailableReply(e));
  return UNAVAILABLE_REPLY.test(err.message);
}

async function guard<R>(work: Promise<R>, ms: number, command: string): Promise<R> {
  try {
    return await withDeadline(work, ms, `redis ${command}`);
  } catch (err) {
    if (err instanceof ErrorReply && !isRedisUnavailableReply(err)) throw err;
    if (err instanceof DependencyUnavailable) throw err;
    throw new DependencyUnavailable('redis', err instanceof Error ? err.message : String(err), { cause: err });
  }
}
