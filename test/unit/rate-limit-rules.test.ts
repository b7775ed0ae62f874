import { hitAll, verdict, windowOf, type RateLimiter, type RateLimitRule } from '../../src/limits/rate-limiter.js';

const rule: RateLimitRule = { name: 'unit', limit: 3, windowSeconds: 60 };

describe('windowOf', () => {
  it('aligns fixed windows to multiples of the window length', () => {
    const { start, end } = windowOf(rule, new Date('2030-01-01T00:01:30.500Z'));
    expect(start.toISOString()).toBe('2030-01-01T00:01:00.000Z');
    expect(end.toISOString()).toBe('2030-01-01T00:02:00.000Z');
  });
});

describe('verdict', () => {
  it('allows up to the limit and then tells how long until the window ends', () => {
    const now = new Date('2030-01-01T00:01:15.200Z');
    expect(verdict(rule, 3, now)).toEqual({ allowed: true, retryAfterSeconds: 0 });
    expect(verdict(rule, 4, now)).toEqual({ allowed: false, retryAfterSeconds: 45 });
  });

  it('never says to retry after zero seconds when denying', () => {
    expect(verdict(rule, 4, new Date('2030-01-01T00:01:59.999Z')).retryAfterSeconds).toBe(1);
  });
});

describe('hitAll', () => {
  it('counts every rule and returns the most restrictive verdict', async () => {
    const seen: string[] = [];
    const limiter: RateLimiter = {
      async hit(r, subject) {
        seen.push(`${r.name}:${subject}`);
        return r.name === 'a' ? { allowed: false, retryAfterSeconds: 10 } : r.name === 'b' ? { allowed: false, retryAfterSeconds: 90 } : { allowed: true, retryAfterSeconds: 0 };
      },
    };
    const result = await hitAll(limiter, [[{ ...rule, name: 'a' }, 'x'], [{ ...rule, name: 'b' }, 'y'], [{ ...rule, name: 'c' }, 'z']]);
    expect(result).toEqual({ allowed: false, retryAfterSeconds: 90 });
    expect(seen.sort()).toEqual(['a:x', 'b:y', 'c:z']);
  });
});
