import type { RedisConnection } from '../db/redis.js';
import { verdict, windowOf, type RateLimiter, type RateLimitRule, type RateLimitVerdict } from './rate-limiter.js';

export class RedisRateLimiter implements RateLimiter {
  constructor(private readonly redis: RedisConnection, private readonly prefix = 'tsunagi:rl:') {}

  async hit(rule: RateLimitRule, subject: string, now = new Date()): Promise<RateLimitVerdict> {
    const { start, end } = windowOf(rule, now);
    const key = `${this.prefix}${rule.name}:${subject}:${start.getTime()}`;
    // A lifetime relative to Redis's own clock: an absolute PEXPIREAT from this process's clock would
    // delete the counter at once (and stop limiting) whenever this clock is behind the Redis server's.
    const ttlMs = end.getTime() - now.getTime() + 1000;
    const [count] = await this.redis.multi().incr(key).pExpire(key, ttlMs).exec();
    return verdict(rule, Number(count), now);
  }
}
