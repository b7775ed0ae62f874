// What every rate limiter store must do, run against Postgres, one Redis, a Sentinel primary and a Redis Cluster.
import { randomUUID } from 'node:crypto';
import type { RateLimiter, RateLimitRule } from '../../src/limits/rate-limiter.js';

// A rule of its own per test: counters are shared by every test using the same store.
export const freshRule = (limit = 3, windowSeconds = 60): RateLimitRule => ({ name: `test-${randomUUID()}`, limit, windowSeconds });

export function rateLimiterContract(limiter: () => RateLimiter): void {
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
