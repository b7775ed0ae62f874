import { loadConfig } from '../../src/config.js';
import { bearerMatches, metricsAccess } from '../../src/web/metrics.js';

const TOKEN = 'm'.repeat(40);

describe('who may read /metrics (issue 9 section 7)', () => {
  it('is off in production without METRICS_TOKEN, bearer-only with it, and open in development', () => {
    expect(metricsAccess({ nodeEnv: 'production', metricsToken: undefined })).toEqual({ kind: 'off' });
    expect(metricsAccess({ nodeEnv: 'production', metricsToken: TOKEN })).toEqual({ kind: 'bearer', token: TOKEN });
    expect(metricsAccess({ nodeEnv: 'development', metricsToken: TOKEN })).toEqual({ kind: 'bearer', token: TOKEN });
    expect(metricsAccess({ nodeEnv: 'development', metricsToken: undefined })).toEqual({ kind: 'open' });
  });

  it('accepts only the exact bearer token', () => {
    expect(bearerMatches(`Bearer ${TOKEN}`, TOKEN)).toBe(true);
    expect(bearerMatches(`bearer ${TOKEN}`, TOKEN)).toBe(true);
    for (const header of ['', TOKEN, `Basic ${TOKEN}`, `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(1)}`, `Bearer  ${TOKEN}`, `Bearer ${TOKEN} `, 'Bearer ñ']) {
      expect(bearerMatches(header, TOKEN)).toBe(false);
    }
  });

  it('validates METRICS_TOKEN when the configuration is loaded', () => {
    expect(loadConfig({ METRICS_TOKEN: TOKEN }).metricsToken).toBe(TOKEN);
    expect(loadConfig({}).metricsToken).toBeUndefined();
    expect(() => loadConfig({ METRICS_TOKEN: 'short' })).toThrow(/METRICS_TOKEN must be at least 32 printable ASCII characters/);
  });
});
