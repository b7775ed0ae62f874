import { createClient, ErrorReply } from 'redis';
import { DependencyUnavailable, withDeadline } from '../failures/dependency.js';

export type RedisConnection = ReturnType<typeof createClient>;

export interface RedisTimeouts {
  /** Deadline of one command (or one MULTI/EXEC), from the call to the reply. */
  commandTimeoutMs: number;
  /** Deadline of opening the TCP connection (each reconnect attempt too). */
  connectTimeoutMs: number;
}

export const DEFAULT_REDIS_TIMEOUTS: RedisTimeouts = { commandTimeoutMs: 2000, connectTimeoutMs: 2000 };

/**
 * A client whose every command fails fast when Redis is away: no offline queue (commands issued
 * during an outage are refused, never replayed into the Redis that comes back), a deadline on each
 * connection attempt and on each command, and reconnection with capped, jittered backoff forever.
 * A failure to reach Redis surfaces as DependencyUnavailable('redis'); Redis' own error replies
 * (a wrong type, a script error) pass through unchanged.
 */
export async function openRedis(url: string, timeouts: RedisTimeouts = DEFAULT_REDIS_TIMEOUTS): Promise<RedisConnection> {
  const client = createClient({
    url,
    disableOfflineQueue: true,
    // Also bounds a command that waits to be written (a connection that is still being set up).
    commandOptions: { timeout: timeouts.commandTimeoutMs },
    socket: {
      connectTimeout: timeouts.connectTimeoutMs,
      keepAlive: true,
      reconnectStrategy: (retries) => Math.min(100 * 2 ** Math.min(retries, 5), 2000) + Math.floor(Math.random() * 100),
    },
  });
  client.on('error', () => { /* reconnects; readiness reports it */ });
  await client.connect();
  return withCommandDeadlines(client, timeouts.commandTimeoutMs);
}

// node-redis' command timeout only covers the wait before a command is written: one that was sent to
// a Redis that stopped answering (frozen, or a network that drops packets) waits for its reply with
// no end. Every promise a command returns is raced against the deadline here instead.
const NOT_COMMANDS = new Set<PropertyKey>(['connect', 'quit', 'close', 'destroy', 'disconnect', 'on', 'once', 'off', 'addListener', 'removeListener', 'removeAllListeners', 'emit', 'duplicate', 'scanIterator']);

function withCommandDeadlines<T extends object>(target: T, ms: number): T {
  const proxy: T = new Proxy(target, {
    get(obj, prop) {
      const value: unknown = Reflect.get(obj, prop, obj);
      if (typeof value !== 'function') return value;
      // node-redis methods read private fields: they run on the client itself, never on the proxy.
      if (NOT_COMMANDS.has(prop)) return (value as (...a: unknown[]) => unknown).bind(obj);
      return (...args: unknown[]) => {
        const result: unknown = (value as (...a: unknown[]) => unknown).apply(obj, args);
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

async function guard<R>(work: Promise<R>, ms: number, command: string): Promise<R> {
  try {
    return await withDeadline(work, ms, `redis ${command}`);
  } catch (err) {
    if (err instanceof ErrorReply) throw err;
    throw new DependencyUnavailable('redis', err instanceof Error ? err.message : String(err), { cause: err });
  }
}
