import type { RunningServer } from '../../src/server.js';
import { describeBackends, startTestServer } from '../support/harness.js';

const TOKEN = `metrics-${'t'.repeat(40)}`;

describe(`/metrics behind METRICS_TOKEN (${describeBackends()})`, () => {
  let server: RunningServer;
  beforeAll(async () => { server = await startTestServer({ METRICS_TOKEN: TOKEN }); });
  afterAll(async () => { await server?.close(); });

  it('answers 401 with a Bearer challenge without the token or with a wrong one, and the metrics with it', async () => {
    const url = `${server.services.config.issuer}/metrics`;
    const attempts: Array<Record<string, string>> = [{}, { authorization: `Bearer ${TOKEN}x` }, { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` }];
    for (const headers of attempts) {
      const refused = await fetch(url, { headers });
      expect(refused.status).toBe(401);
      expect(refused.headers.get('www-authenticate')).toBe('Bearer realm="metrics"');
      expect(await refused.text()).not.toContain('tsunagi_');
    }
    const allowed = await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(allowed.status).toBe(200);
    expect(await allowed.text()).toMatch(/tsunagi_http_requests_total/);
  });
});
