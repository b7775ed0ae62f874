import type pg from 'pg';
import { verdict, windowOf, type RateLimiter, type RateLimitRule, type RateLimitVerdict } from './rate-limiter.js';

export class PostgresRateLimiter implements RateLimiter {
  constructor(private readonly pool: pg.Pool) {}

  async hit(rule: RateLimitRule, subject: string, now = new Date()): Promise<RateLimitVerdict> {
    const { start, end } = windowOf(rule, now);
    const { rows } = await this.pool.query<{ count: number }>(
      `INSERT INTO rate_limit_counters (key, window_start, count, expires_at) VALUES ($1, $2, 1, $3)
       ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limit_counters.count + 1
       RETURNING count`,
      [`${rule.name}:${subject}`, start, end],
    );
    return verdict(rule, rows[0]?.count ?? 1, now);
  }

  async sweep(now = new Date()): Promise<number> {
    const r = await this.pool.query('DELETE FROM rate_limit_counters WHERE expires_at < $1', [now]);
    return r.rowCount ?? 0;
  }
}
