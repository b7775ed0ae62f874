import type { RunningServer } from '../../src/server.js';
import { describeBackends, startTestServer } from '../support/harness.js';

/**
 * Every response carries the Content-Security-Policy. A page's scripts and styles run by the nonce
 * its policy names (src/web/security-headers.ts), a new one per page; a response that renders no
 * page (discovery, tokens, userinfo) gets the policy without a nonce, and makes none.
 */
describe(`Content-Security-Policy (${describeBackends()})`, () => {
  let server: RunningServer;
  beforeAll(async () => { server = await startTestServer(); }, 120_000);
  afterAll(async () => { await server?.close(); });

  const nonceOf = (policy: string | null) => /'nonce-([^']+)'/.exec(policy ?? '')?.[1];

  async function page(path: string) {
    const res = await fetch(new URL(path, server.url), { redirect: 'manual' });
    const body = await res.text();
    return { status: res.status, type: res.headers.get('content-type') ?? '', policy: res.headers.get('content-security-policy'), body };
  }

  it.each([
    ['oidc-provider\'s error page', '/auth'],
    ['Tsunagi\'s error page', '/interaction/no-such-interaction'],
  ])('lets %s run its scripts and styles by the nonce its policy names', async (_what, path) => {
    const p = await page(path);
    expect(p.type).toMatch(/text\/html/);
    const nonce = nonceOf(p.policy);
    expect(nonce).toMatch(/^[A-Za-z0-9+/]{22}==$/);
    expect(p.policy).toContain(`script-src 'self' 'nonce-${nonce}'`);
    expect(p.policy).toContain(`style-src 'self' 'nonce-${nonce}'`);
    const used = [...p.body.matchAll(/<(script|style|link)\b[^>]*\bnonce="([^"]+)"/g)].map((m) => m[2]);
    expect(used.length).toBeGreaterThan(0);
    expect(new Set(used)).toEqual(new Set([nonce]));
  });

  it('gives each page a nonce of its own', async () => {
    const [a, b] = [await page('/auth'), await page('/auth')];
    expect(nonceOf(a.policy)).toBeDefined();
    expect(nonceOf(a.policy)).not.toBe(nonceOf(b.policy));
  });

  it('gives a response that renders no page the policy without a nonce', async () => {
    for (const path of ['/.well-known/openid-configuration', '/jwks', '/healthz']) {
      const p = await page(path);
      expect({ path, status: p.status }).toEqual({ path, status: 200 });
      expect(p.policy).toContain("script-src 'self'; style-src 'self'");
      expect(p.policy).toContain("frame-ancestors 'none'");
      expect(nonceOf(p.policy)).toBeUndefined();
    }
  });
});
