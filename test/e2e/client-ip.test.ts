import { randomInt } from 'node:crypto';
import * as oidc from 'openid-client';
import { EMAIL_SEND_LIMITS } from '../../src/methods/email-otp.js';
import { SMS_SEND_LIMITS } from '../../src/methods/sms-otp.js';
import type { RunningServer } from '../../src/server.js';
import { SmtpSink } from '../fakes/smtp-sink.js';
import { Browser, csrfOf } from '../support/browserless.js';
import { describeBackends, startTestServer, uniqueEmail } from '../support/harness.js';
import { authorizationRequest, discover, signInWithEmail } from './support.js';

// Issue 9 section 2: behind a proxy, the client's address is the one the proxy appended to
// X-Forwarded-For, not whatever the client wrote at the left of it. Forged entries must neither
// dodge the per-IP limits nor reach the audit log.

const REDIRECT = 'http://127.0.0.1:9/cb';

/** An address from the benchmarking range, fresh per run (counters in a shared database outlive a run). */
const someClientIp = () => `198.18.${randomInt(0, 256)}.${randomInt(1, 255)}`;
const forgedIp = (i: number) => `10.${i % 250}.${randomInt(0, 256)}.${randomInt(1, 255)}`;

async function startWith(trustProxy: string) {
  const sink = new SmtpSink();
  const server = await startTestServer({ SMTP_URL: await sink.start(), TRUST_PROXY: trustProxy });
  const added = await server.services.clients.add({ client_name: 'Shop', redirect_uris: [REDIRECT], first_party: true });
  return { sink, server, clientId: added.client_id as string, clientSecret: added.client_secret as string };
}

async function signInPage(server: RunningServer, clientId: string, clientSecret: string, browser: Browser) {
  const config = await discover(server, clientId, clientSecret);
  const req = await authorizationRequest(config, REDIRECT);
  const login = await browser.follow(req.url.href);
  return { uid: /\/interaction\/([\w-]+)\//.exec(login.body)?.[1] as string, csrf: csrfOf(login.body) };
}

async function auditIpsOf(server: RunningServer, email: string): Promise<string[]> {
  const { rows } = await server.services.db.pool.query<{ ip: string }>(
    `SELECT e.ip FROM audit_events e JOIN account_emails m ON m.account_id = e.account_id WHERE m.email_key = $1 AND e.type = 'sign_in'`, [email.toLowerCase()]);
  return rows.map((r) => r.ip);
}

describe(`the client address behind one proxy, TRUST_PROXY=1 (${describeBackends()})`, () => {
  let c: Awaited<ReturnType<typeof startWith>>;
  beforeAll(async () => { c = await startWith('1'); });
  afterAll(async () => {
    await c?.server.close();
    await c?.sink.close();
  });

  it('counts email code sends against the address the proxy saw, whatever the client forged to its left', async () => {
    const realIp = someClientIp();
    // Each request: a forged leftmost entry written by the client, then the one the proxy appended.
    const browser = new Browser();
    const { uid, csrf } = await signInPage(c.server, c.clientId, c.clientSecret, browser);
    const send = (i: number) => fetch(`${c.server.services.config.issuer}/interaction/${uid}/email`, {
      method: 'POST', redirect: 'manual',
      headers: { cookie: browser.jar.header(), 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': `${forgedIp(i)}, ${realIp}` },
      body: new URLSearchParams({ _csrf: csrf, email: uniqueEmail(`ip${i}`) }).toString(),
    });
    for (let i = 0; i < EMAIL_SEND_LIMITS.perIp.limit; i++) expect((await send(i)).status).toBe(303);
    const refused = await send(EMAIL_SEND_LIMITS.perIp.limit);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('counts SMS code sends against the address the proxy saw', async () => {
    const realIp = someClientIp();
    const browser = new Browser();
    const { uid, csrf } = await signInPage(c.server, c.clientId, c.clientSecret, browser);
    const send = (i: number) => fetch(`${c.server.services.config.issuer}/interaction/${uid}/phone`, {
      method: 'POST', redirect: 'manual',
      headers: { cookie: browser.jar.header(), 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': `${forgedIp(i)}, ${realIp}` },
      body: new URLSearchParams({ _csrf: csrf, phone: `+8190${String(randomInt(10_000_000, 99_999_999))}` }).toString(),
    });
    for (let i = 0; i < SMS_SEND_LIMITS.perIp.limit; i++) expect((await send(i)).status).toBe(303);
    expect((await send(SMS_SEND_LIMITS.perIp.limit)).status).toBe(429);
  });

  it('records the address the proxy saw in the audit log, not the forged one', async () => {
    const realIp = someClientIp();
    const forged = '192.0.2.66';
    const browser = new Browser({ 'x-forwarded-for': `${forged}, ${realIp}` });
    const config = await discover(c.server, c.clientId, c.clientSecret);
    const req = await authorizationRequest(config, REDIRECT);
    const email = uniqueEmail('audit-ip');
    const { callback } = await signInWithEmail(browser, c.server.services.config.issuer, req.url, REDIRECT, email, c.sink);
    await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    expect(await auditIpsOf(c.server, email)).toEqual([realIp]);
  });
});

describe(`the client address with TRUST_PROXY=0 and TRUST_PROXY=2 (${describeBackends()})`, () => {
  it.each([
    ['0', (real: string) => `192.0.2.66, ${real}`, () => '127.0.0.1'],
    ['2', (real: string) => `192.0.2.66, ${real}, 10.1.2.3`, (real: string) => real],
  ])('with TRUST_PROXY=%s records the address the trusted hops vouch for', async (hops, header, expected) => {
    const c = await startWith(hops);
    try {
      const realIp = someClientIp();
      const browser = new Browser({ 'x-forwarded-for': header(realIp) });
      const config = await discover(c.server, c.clientId, c.clientSecret);
      const req = await authorizationRequest(config, REDIRECT);
      const email = uniqueEmail(`hops${hops}`);
      await signInWithEmail(browser, c.server.services.config.issuer, req.url, REDIRECT, email, c.sink);
      expect(await auditIpsOf(c.server, email)).toEqual([expected(realIp)]);
    } finally {
      await c.server.close();
      await c.sink.close();
    }
  });
});
