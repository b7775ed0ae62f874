// Fixed-window counters. A rule says how many hits a subject (an address, a phone number, an IP)
// may make per window; the verdict tells the caller when to try again so the page can say so.

export interface RateLimitRule {
  name: string;
  limit: number;
  windowSeconds: number;
}

export interface RateLimitVerdict {
  allowed: boolean;
  /** Seconds until the current window ends (0 when allowed). */
  retryAfterSeconds: number;
}

export interface RateLimiter {
  hit(rule: RateLimitRule, subject: string, now?: Date): Promise<RateLimitVerdict>;
}

export function windowOf(rule: RateLimitRule, now: Date): { start: Date; end: Date } {
  const ms = rule.windowSeconds * 1000;
  const start = Math.floor(now.getTime() / ms) * ms;
  return { start: new Date(start), end: new Date(start + ms) };
}

export function verdict(rule: RateLimitRule, count: number, now: Date): RateLimitVerdict {
  if (count <= rule.limit) return { allowed: true, retryAfterSeconds: 0 };
  const { end } = windowOf(rule, now);
  return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((end.getTime() - now.getTime()) / 1000)) };
}

/** Checks every rule (each hit counts) and returns the most restrictive verdict. */
export async function hitAll(limiter: RateLimiter, hits: Array<[RateLimitRule, string]>, now = new Date()): Promise<RateLimitVerdict> {
  const verdicts = await Promise.all(hits.map(([rule, subject]) => limiter.hit(rule, subject, now)));
  const denied = verdicts.filter((v) => !v.allowed);
  if (denied.length === 0) return { allowed: true, retryAfterSeconds: 0 };
  return { allowed: false, retryAfterSeconds: Math.max(...denied.map((v) => v.retryAfterSeconds)) };
}
