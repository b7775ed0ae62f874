import { randomUUID } from 'node:crypto';
import type { Database } from '../../src/db/database.js';
import { openRedis, type RedisConnection } from '../../src/db/redis.js';
import { PostgresRateLimiter } from '../../src/limits/postgres-rate-limiter.js';
import type { RateLimiter, RateLimitRule } from '../../src/limits/rate-limiter.js';
import { RedisRateLimiter } from '../../src/limits/redis-rate-limiter.js';
import { openTestDatabase } from '../support/harness.js';

const REDIS_URL = process.env.REDIS_URL;
if (!REDIS_URL) console.warn('REDIS_URL not set: Redis adapter/rate-limiter tests did NOT run');
const describeWithRedis = REDIS_URL ? describe : describe.skip;

// A rule of its own per test: counters are shared by every test using the same store.
const freshRule = (limit = 3, windowSeconds = 60): RateLimitRule => ({ name: `test-${randomUUID()}`, limit, windowSeconds });

function rateLimiterContract(limiter: () => RateLimiter): void {
  // Clocks well away from the real one, on a window boundary, so retry times are exact.
  const windowStart = new Date('2031-06-01T10:00:00.000Z');
  const at = (seconds: number) => new Date(windowStart.getTime() + seconds * 1000);

  it('allows `limit` hits in a window, then denies with the seconds left in the window', async () => {
    const rule = freshRule(3, 60);
    for (let i = 0; i < 3; i++) expect(await limiter().hit(rule, 'subject', at(i))).toEqual({ allowed: true, retryAfterSeconds: 0 });
    expect(await limiter().hit(rule, 'subject', at(20))).toEqual({ allowed: false, retryAfterSeconds: 40 });
    expect(await limiter().hit(rule, 'subject', at(59.5))).toEqual({ allowed: false, retryAfterSeconds: 1 });
  });

  it('allows again in the next window', async () => {
    const rule = freshRule(2, 60);
    for (let i = 0; i < 3; i++) await limiter().hit(rule, 'subject', at(i));
    expect((await limiter().hit(rule, 'subject', at(30))).allowed).toBe(false);
    expect(await limiter().hit(rule, 'subject', at(60))).toEqual({ allowed: true, retryAfterSeconds: 0 });
    expect(await limiter().hit(rule, 'subject', at(61))).toEqual({ allowed: true, retryAfterSeconds: 0 });
    expect((await limiter().hit(rule, 'subject', at(62))).allowed).toBe(false);
  });

  it('counts each subject and each rule separately', async () => {
    const rule = freshRule(1, 60);
    expect((await limiter().hit(rule, 'alice', at(0))).allowed).toBe(true);
    expect((await limiter().hit(rule, 'bob', at(0))).allowed).toBe(true);
    expect((await limiter().hit(freshRule(1, 60), 'alice', at(0))).allowed).toBe(true);
    expect((await limiter().hit(rule, 'alice', at(1))).allowed).toBe(false);
  });

  it('lets exactly `limit` of many concurrent hits through', async () => {
    const rule = freshRule(5, 60);
    const verdicts = await Promise.all(Array.from({ length: 25 }, () => limiter().hit(rule, 'burst', at(5))));
    expect(verdicts.filter((v) => v.allowed)).toHaveLength(5);
  });

  it('keeps counting when the caller\'s clock is behind the store\'s', async () => {
    const rule = freshRule(2, 3600);
    const past = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 24 * 3_600_000 + 1000);
    for (let i = 0; i < 2; i++) expect((await limiter().hit(rule, 'skewed', past)).allowed).toBe(true);
    expect((await limiter().hit(rule, 'skewed', past)).allowed).toBe(false);
  });
}

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
