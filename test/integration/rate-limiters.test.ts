import { randomUUID } from 'node:crypto';
import type { Database } from '../../src/db/database.js';
import { openRedis, type RedisConnection } from '../../src/db/redis.js';
import { PostgresRateLimiter } from '../../src/limits/postgres-rate-limiter.js';
import { RedisRateLimiter } from '../../src/limits/redis-rate-limiter.js';
import { openTestDatabase } from '../support/harness.js';
import { freshRule, rateLimiterContract } from './rate-limiter-contract.js';

const REDIS_URL = process.env.REDIS_URL;
if (!REDIS_URL) console.warn('REDIS_URL not set: Redis adapter/rate-limiter tests did NOT run');
const describeWithRedis = REDIS_URL ? describe : describe.skip;

describe('PostgresRateLimiter', () => {
  let db: Database;
  let limiter: PostgresRateLimiter;
  beforeAll(async () => {
    db = await openTestDatabase();
    limiter = new PostgresRateLimiter(db.pool);
  });
  afterAll(async () => { await db.close(); });

  rateLimiterContract(() => limiter);

  it('sweeps counters of windows that have ended', async () => {
    const rule = freshRule(1, 60);
    await limiter.hit(rule, 'old', new Date('2001-01-01T00:00:00Z'));
    await limiter.sweep(new Date('2001-01-01T00:05:00Z'));
    const { rows } = await db.pool.query('SELECT 1 FROM rate_limit_counters WHERE key = $1', [`${rule.name}:old`]);
    expect(rows).toHaveLength(0);
  });
});

describeWithRedis('RedisRateLimiter', () => {
  let redis: RedisConnection;
  let limiter: RedisRateLimiter;
  beforeAll(async () => {
    redis = await openRedis(REDIS_URL as string);
    limiter = new RedisRateLimiter(redis, `tsunagi:test-rl:${randomUUID()}:`);
  });
  afterAll(async () => { await redis?.close(); });

  rateLimiterContract(() => limiter);

  it('lets its counters expire soon after their window', async () => {
    const prefix = `tsunagi:test-rl:${randomUUID()}:`;
    const own = new RedisRateLimiter(redis, prefix);
    const rule = freshRule(1, 60);
    await own.hit(rule, 'ttl');
    const keys = await redis.keys(`${prefix}*`);
    expect(keys).toHaveLength(1);
    const ttl = await redis.pTTL(keys[0] as string);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(61_000);
  });
});
