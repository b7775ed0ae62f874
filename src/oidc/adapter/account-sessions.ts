import type pg from 'pg';
import type { RedisConnection } from '../../db/redis.js';

/** The part of a stored oidc-provider Session that says how it was signed in and what it was granted. */
export interface StoredSession {
  loginTs?: number;
  amr?: string[];
  /** Per client: the grant this session authorized (oidc-provider's session.authorizations). */
  authorizations?: Record<string, { grantId?: string } | undefined>;
}

export interface DeletedSessions { deleted: number; grantIds: string[] }

/**
 * Deletes stored oidc-provider Sessions of an account (all of them, or those `which` picks), so each
 * browser signed in as it is signed out at its next request, and hands back the grants those
 * sessions authorized. Sessions live in Postgres, or in Redis when configured (see
 * SHORT_LIVED_MODELS): there they have no index by account, so they are found by SCAN, which walks
 * the key space incrementally without blocking Redis. That is fine for the rare events that need it
 * (an upstream account deleted, hijacked or its consent revoked), not for anything on a request path.
 */
export async function deleteSessionsOfAccount(
  store: { pool: pg.Pool; redis: RedisConnection | undefined; redisPrefix: string },
  accountId: string,
  which: (session: StoredSession) => boolean = () => true,
): Promise<DeletedSessions> {
  const grantIds = new Set<string>();
  const collect = (session: StoredSession) => {
    for (const a of Object.values(session.authorizations ?? {})) if (typeof a?.grantId === 'string') grantIds.add(a.grantId);
  };
  if (!store.redis) {
    const { rows } = await store.pool.query<{ id: string; payload: StoredSession }>(
      `SELECT id, payload FROM oidc_payloads WHERE model = 'Session' AND payload->>'accountId' = $1`, [accountId]);
    const doomed = rows.filter((r) => which(r.payload));
    if (doomed.length === 0) return { deleted: 0, grantIds: [] };
    const r = await store.pool.query(`DELETE FROM oidc_payloads WHERE model = 'Session' AND id = ANY($1::text[])`, [doomed.map((d) => d.id)]);
    doomed.forEach((d) => collect(d.payload));
    return { deleted: r.rowCount ?? 0, grantIds: [...grantIds] };
  }
  const redis = store.redis;
  let deleted = 0;
  for await (const keys of redis.scanIterator({ MATCH: `${store.redisPrefix}Session:*`, TYPE: 'hash', COUNT: 500 })) {
    for (const key of keys) {
      const raw = await redis.hGet(key, 'payload');
      if (!raw) continue;
      const payload = JSON.parse(raw) as StoredSession & { accountId?: unknown; uid?: unknown };
      if (payload.accountId !== accountId || !which(payload)) continue;
      const uid = payload.uid;
      const doomed = typeof uid === 'string' ? [key, `${store.redisPrefix}Session:uid:${uid}`] : [key];
      if ((await redis.del(doomed)) > 0) {
        deleted += 1;
        collect(payload);
      }
    }
  }
  return { deleted, grantIds: [...grantIds] };
}
