import { randomUUID } from 'node:crypto';
import type { Database } from '../../src/db/database.js';
import { openRedis, type RedisConnection } from '../../src/db/redis.js';
import { createAdapterFactory } from '../../src/oidc/adapter/index.js';
import { importSessionsFromRedis } from '../../src/oidc/adapter/legacy-redis-sessions.js';
import { RedisAdapter } from '../../src/oidc/adapter/redis-adapter.js';
import { openTestDatabase } from '../support/harness.js';

const REDIS_URL = process.env.REDIS_URL;
if (!REDIS_URL) console.warn('REDIS_URL not set: the import of sessions an older version kept in Redis was NOT tested');
const describeWithRedis = REDIS_URL ? describe : describe.skip;

describeWithRedis('sessions import-from-redis (upgrading from a version that kept sessions in Redis)', () => {
  let db: Database;
  let redis: RedisConnection;
  // A key space of this test's own in the shared Redis.
  const prefix = `tsunagi-test-${randomUUID().slice(0, 8)}:oidc:`;
  beforeAll(async () => {
    db = await openTestDatabase();
    redis = await openRedis(REDIS_URL as string);
  });
  afterAll(async () => {
    await redis?.close();
    await db?.close();
  });

  it('moves each session with its remaining lifetime into Postgres, findable by id and uid, and leaves none in Redis', async () => {
    // Stored exactly as the older version did: through the Redis adapter, with a lookup key by uid.
    const legacy = new RedisAdapter('Session', redis, async () => { throw new Error('not consumed'); }, prefix);
    const id = randomUUID();
    const uid = randomUUID();
    const payload = { jti: id, uid, kind: 'Session', accountId: randomUUID(), authorizations: { web: { grantId: 'g-1', persistsLogout: false } } };
    await legacy.upsert(id, payload, 3600);

    expect(await importSessionsFromRedis(db.pool, redis, prefix)).toEqual({ imported: 1, skipped: 0 });

    const sessions = createAdapterFactory(db.pool, redis, prefix)('Session');
    expect(await sessions.find(id)).toEqual(payload);
    expect(await sessions.findByUid(uid)).toEqual(payload);
    const { rows } = await db.pool.query<{ seconds: number }>(
      `SELECT extract(epoch FROM expires_at - now())::int AS seconds FROM oidc_payloads WHERE model = 'Session' AND id = $1`, [id]);
    expect(rows[0]?.seconds).toBeGreaterThan(3500);
    expect(rows[0]?.seconds).toBeLessThanOrEqual(3600);
    expect(await redis.exists([`${prefix}Session:${id}`, `${prefix}Session:uid:${uid}`])).toBe(0);

    // A second run finds nothing more to move.
    expect(await importSessionsFromRedis(db.pool, redis, prefix)).toEqual({ imported: 0, skipped: 0 });
  });
});
