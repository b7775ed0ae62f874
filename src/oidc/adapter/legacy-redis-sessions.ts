import type pg from 'pg';
import { asSingleServer, type RedisConnection } from '../../db/redis.js';
import { PostgresAdapter } from './postgres-adapter.js';
import type { AdapterPayload } from './types.js';

/** skipped: gone or without a lifetime by the time it was read (an older Tsunagi always set one). */
export interface SessionImport { imported: number; skipped: number }

/**
 * Moves the browser sessions an older Tsunagi kept in Redis (hash `<prefix>Session:<id>` with its
 * lookup key `<prefix>Session:uid:<uid>`) into Postgres, where sessions live now, keeping each
 * one's remaining lifetime; then deletes them from Redis. Run once at the upgrade, after the old
 * processes have stopped (one still running could end a session in Redis that has been copied) and
 * before the new ones serve: a cookie whose session is not found yet is replaced by a fresh session.
 * Without it, everyone signed in before the upgrade signs in once more. Running it again finds nothing.
 */
export async function importSessionsFromRedis(pool: pg.Pool, connection: RedisConnection, redisPrefix: string): Promise<SessionImport> {
  // The versions that kept sessions in Redis knew only REDIS_URL: one server, which SCAN covers whole.
  const redis = asSingleServer(connection);
  if (!redis) throw new Error('the sessions of an older version are in the one Redis its REDIS_URL named: run this with that REDIS_URL');
  const sessions = new PostgresAdapter('Session', pool, async () => { throw new Error('sessions are not consumed'); });
  const keyPrefix = `${redisPrefix}Session:`;
  const result: SessionImport = { imported: 0, skipped: 0 };
  // Only the hashes: the uid lookup keys are plain strings, deleted with their session.
  for await (const keys of redis.scanIterator({ MATCH: `${keyPrefix}*`, TYPE: 'hash', COUNT: 500 })) {
    for (const key of keys) {
      const [stored, ttlMs] = await Promise.all([redis.hGet(key, 'payload'), redis.pTTL(key)]);
      const payload = stored ? (JSON.parse(stored) as AdapterPayload) : undefined;
      const uidKey = typeof payload?.uid === 'string' ? [`${keyPrefix}uid:${payload.uid}`] : [];
      if (payload && ttlMs > 1000) {
        await sessions.upsert(key.slice(keyPrefix.length), payload, Math.floor(ttlMs / 1000));
        result.imported++;
      } else {
        result.skipped++;
      }
      await redis.del([key, ...uidKey]);
    }
  }
  return result;
}
