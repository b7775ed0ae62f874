import type pg from 'pg';
import type { RedisConnection } from '../../db/redis.js';

/**
 * Deletes every stored oidc-provider Session of an account, so each browser signed in as it is
 * signed out at its next request. Sessions live in Postgres, or in Redis when configured (see
 * SHORT_LIVED_MODELS): there they have no index by account, so they are found by SCAN, which walks
 * the key space incrementally without blocking Redis. That is fine for the rare events that need it
 * (an upstream account deleted or its consent revoked), not for anything on a request path.
 */
export async function deleteSessionsOfAccount(
  store: { pool: pg.Pool; redis: RedisConnection | undefined; redisPrefix: string },
  accountId: string,
): Promise<number> {
  if (!store.redis) {
    const r = await store.pool.query(`DELETE FROM oidc_payloads WHERE model = 'Session' AND payload->>'accountId' = $1`, [accountId]);
    return r.rowCount ?? 0;
  }
  const redis = store.redis;
  let deleted = 0;
  for await (const keys of redis.scanIterator({ MATCH: `${store.redisPrefix}Session:*`, TYPE: 'hash', COUNT: 500 })) {
    for (const key of keys) {
      const payload = await redis.hGet(key, 'payload');
      if (!payload || (JSON.parse(payload) as { accountId?: unknown }).accountId !== accountId) continue;
      const uid = (JSON.parse(payload) as { uid?: unknown }).uid;
      const doomed = typeof uid === 'string' ? [key, `${store.redisPrefix}Session:uid:${uid}`] : [key];
      deleted += (await redis.del(doomed)) > 0 ? 1 : 0;
    }
  }
  return deleted;
}
