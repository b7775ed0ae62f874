import * as oidc from 'openid-client';
import type { RunningServer } from '../../src/server.js';
import { FakeTwilio, TWILIO_INVALID_NUMBER, TWILIO_UNREACHABLE_NUMBER, smsCode } from '../fakes/twilio.js';
import { SmtpSink, codeFrom } from '../fakes/smtp-sink.js';
import { Browser, csrfOf, formAction } from '../support/browserless.js';
import { describeBackends, startTestServer, uniqueEmail } from '../support/harness.js';
import { authorizationRequest, discover, signInWithEmail } from './support.js';

const REDIRECT = 'http://127.0.0.1:9/cb';
let phoneCounter = 0;
/** A fresh valid Japanese mobile number per test (national format, as people type it). */
function newJapaneseMobile(): { typed: string; e164: string } {
  const n = (Date.now() % 100_000_000) + phoneCounter++;
  const digits = String(n).padStart(8, '0').slice(-8);
  return { typed: `090-${digits.slice(0, 4)}-${digits.slice(4)}`, e164: `+8190${digits}` };
}

interface Ctx { server: RunningServer; sink: SmtpSink; twilio: FakeTwilio; clientId: string; clientSecret: string }

async function setup(env: Record<string, string> = {}, verify = false): Promise<Ctx> {
  const sink = new SmtpSink();
  const twilio = new FakeTwilio();
  const base = await twilio.start();
  const server = await startTestServer({
    SMTP_URL: await sink.start(),
    TWILIO_ACCOUNT_SID: twilio.accountSid,
    TWILIO_AUTH_TOKEN: twilio.authToken,
    ...(verify ? { TWILIO_VERIFY_SERVICE_SID: twilio.verifyServiceSid } : { TWILIO_FROM: '+15005550006' }),
    TWILIO_API_BASE_URL: base,
    // Long enough for a loaded machine; only the 'hang' case waits it out.
    TWILIO_TIMEOUT_MS: '5000',
    ...env,
  });
  const added = await server.services.clients.add({ client_name: 'Shop', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'] });
  return { server, sink, twilio, clientId: added.client_id as string, clientSecret: added.client_secret as string };
}

async function teardown(c: Ctx | undefined) {
  await c?.server.close();
  await c?.sink.close();
  await c?.twilio.close();
}

/** Signs up a new person by email code through the third-party client, leaving the browser signed in. */
async function signUp(c: Ctx, browser: Browser, email: string) {
  const config = await discover(c.server, c.clientId, c.clientSecret);
  const req = await authorizationRequest(config, REDIRECT, { scope: 'openid email offline_access', prompt: 'consent' });
  const { callback } = await signInWithEmail(browser, c.server.services.config.issuer, req.url, REDIRECT, email, c.sink);
  const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
  return { config, tokens };
}

/** Opens /account, signing in to the account page first if needed (with an email code when asked). */
async function openAccount(c: Ctx, browser: Browser, email: string, path = '/account') {
  const issuer = c.server.services.config.issuer;
  let page = await browser.follow(`${issuer}${path}`);
  for (let i = 0; i < 5 && !page.url.includes('/account') ; i++) {
    if (page.body.includes('name="email" type="email"')) {
      page = await browser.follow(new URL(formAction(page.body, '/email'), issuer).href, { form: { _csrf: csrfOf(page.body), email } });
    } else if (page.body.includes('autocomplete="one-time-code"')) {
      const code = codeFrom(await c.sink.nextMailTo(email));
      page = await browser.follow(new URL(formAction(page.body, '/code'), issuer).href, { form: { _csrf: csrfOf(page.body), code } });
    } else break;
  }
  return page;
}

/** Makes this browser's Tsunagi sign-in look `seconds` old (the session lives in the adapter). */
async function ageSession(c: Ctx, browser: Browser, seconds: number) {
  const sessionId = browser.jar.header().split('; ').find((p) => p.startsWith('_session='))?.slice('_session='.length);
  const provider = c.server.services.host.current;
  const session = await provider.Session.find(sessionId as string);
  if (!session) throw new Error('no session');
  session.loginTs = (session.loginTs as number) - seconds;
  await session.save(3600);
}

describe(`the account page and SMS codes (${describeBackends()})`, () => {
  let c: Ctx;
  beforeAll(async () => { c = await setup(); });
  afterAll(async () => teardown(c));

  it('adds a phone by SMS code through Twilio, notifies by mail, and then signs in by SMS', async () => {
    const browser = new Browser();
    const email = uniqueEmail('sms');
    await signUp(c, browser, email);
    const issuer = c.server.services.config.issuer;

    const overview = await openAccount(c, browser, email);
    expect(overview.body).toContain(email);
    expect(overview.body).toContain('You have only one way to sign in');

    const phone = newJapaneseMobile();
    const form = await browser.follow(`${issuer}/account/phones/new`);
    expect(form.body).toContain('name="phone"');
    const codePage = await browser.follow(`${issuer}/account/phones`, { form: { _csrf: csrfOf(form.body), phone: phone.typed } });
    expect(codePage.body).toContain('•••-••••-' + phone.e164.slice(-4));
    const sms = c.twilio.lastMessageTo(phone.e164);
    expect(sms?.from).toBe('+15005550006');
    const request = c.twilio.requests.at(-1);
    expect(request?.path).toBe(`/2010-04-01/Accounts/${c.twilio.accountSid}/Messages.json`);
    expect(request?.form).toEqual(expect.objectContaining({ To: phone.e164, From: '+15005550006' }));
    expect(sms?.body).toMatch(/Tsunagi code: \d{6}/);

    const done = await browser.follow(`${issuer}/account/phones/verify`, { form: { _csrf: csrfOf(codePage.body), code: smsCode(sms?.body as string) } });
    expect(done.body).toContain('The phone number was added.');
    expect(done.body).toContain(phone.e164);
    const notice = await c.sink.nextMailTo(email);
    expect(notice.subject).toBe('A phone number was added to your Tsunagi account');
    const audit = await c.server.services.accounts.listAuditEvents({ type: 'phone_added', limit: 5 });
    expect(audit.some((e) => e.data.phone === phone.e164)).toBe(true);

    // A new browser signs in with the phone alone.
    const other = new Browser();
    const config = await discover(c.server, c.clientId, c.clientSecret);
    const req = await authorizationRequest(config, REDIRECT);
    const login = await other.follow(req.url.href);
    const phonePage = await other.follow(new URL(`/interaction/${/\/interaction\/([\w-]+)\//.exec(login.body)?.[1]}/phone`, issuer).href);
    const smsPage = await other.follow(new URL(formAction(phonePage.body, '/phone'), issuer).href, { form: { _csrf: csrfOf(phonePage.body), phone: phone.typed } });
    expect(smsPage.body).toContain('autocomplete="one-time-code"');
    // The sign-in page answers without waiting for Twilio: the SMS may arrive just after.
    const loginSms = await c.twilio.nextMessageTo(phone.e164, sms);
    expect(loginSms).not.toBe(sms);
    const result = await other.follow(new URL(formAction(smsPage.body, '/sms-code'), issuer).href,
      { form: { _csrf: csrfOf(smsPage.body), code: smsCode(loginSms?.body as string) } }, (u) => u.startsWith(REDIRECT));
    expect(result.url.startsWith(REDIRECT)).toBe(true);
    const tokens = await oidc.authorizationCodeGrant(config, new URL(result.url), { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    expect(tokens.claims()?.amr).toEqual(['sms']);
    expect(tokens.claims()?.email).toBe(email);
  });

  it('adds a second email by code, makes it primary and removes the first one', async () => {
    const browser = new Browser();
    const first = uniqueEmail('first');
    const second = uniqueEmail('second');
    await signUp(c, browser, first);
    const issuer = c.server.services.config.issuer;
    const form = await openAccount(c, browser, first, '/account/emails/new');
    const codePage = await browser.follow(`${issuer}/account/emails`, { form: { _csrf: csrfOf(form.body), email: second } });
    expect(codePage.body).toContain(second);
    const added = await browser.follow(`${issuer}/account/emails/verify`, { form: { _csrf: csrfOf(codePage.body), code: codeFrom(await c.sink.nextMailTo(second)) } });
    expect(added.body).toContain('The email address was added.');
    expect((await c.sink.nextMailTo(first)).subject).toBe('An email address was added to your Tsunagi account');

    // The second address cannot be added to anyone else now.
    const taken = await c.server.services.accounts.findAccountByVerifiedEmail({ address: second, key: second.toLowerCase() });
    expect(taken?.emails.map((e) => e.address)).toEqual([first, second]);

    const primary = await browser.follow(`${issuer}/account/emails/primary`, { form: { _csrf: csrfOf(added.body), email_key: second.toLowerCase() } });
    expect(primary.body).toContain('The primary email address was changed.');
    const removed = await browser.follow(`${issuer}/account/emails/remove`, { form: { _csrf: csrfOf(primary.body), email_key: first.toLowerCase() } });
    expect(removed.body).toContain('The email address was removed.');
    const account = await c.server.services.accounts.findAccountByVerifiedEmail({ address: second, key: second.toLowerCase() });
    expect(account?.emails).toEqual([expect.objectContaining({ address: second, isPrimary: true })]);
    // Notifications go to the primary address.
    expect((await c.sink.nextMailTo(second)).subject).toBe('Your Tsunagi primary email address changed');
  });

  it('does not add an email that belongs to another account', async () => {
    const a = uniqueEmail('owner');
    const b = uniqueEmail('intruder');
    await signUp(c, new Browser(), a);
    const browser = new Browser();
    await signUp(c, browser, b);
    const issuer = c.server.services.config.issuer;
    const form = await openAccount(c, browser, b, '/account/emails/new');
    const codePage = await browser.follow(`${issuer}/account/emails`, { form: { _csrf: csrfOf(form.body), email: a } });
    const res = await browser.follow(`${issuer}/account/emails/verify`, { form: { _csrf: csrfOf(codePage.body), code: codeFrom(await c.sink.nextMailTo(a)) } });
    expect(res.body).toContain('That belongs to another account already');
    const owner = await c.server.services.accounts.findAccountByVerifiedEmail({ address: a, key: a.toLowerCase() });
    const intruder = await c.server.services.accounts.findAccountByVerifiedEmail({ address: b, key: b.toLowerCase() });
    expect(owner?.id).not.toBe(intruder?.id);
    expect(intruder?.emails).toHaveLength(1);
  });

  it('refuses to remove the last sign-in method and says why', async () => {
    const browser = new Browser();
    const email = uniqueEmail('last');
    await signUp(c, browser, email);
    const overview = await openAccount(c, browser, email);
    expect(overview.body).toMatch(/<button type="submit" class="link danger" disabled/);
    const key = email.toLowerCase();
    const res = await browser.follow(`${c.server.services.config.issuer}/account/emails/remove`, { form: { _csrf: csrfOf(overview.body), email_key: key } });
    expect(res.body).toContain('This is your last way to sign in');
    const account = await c.server.services.accounts.findAccountByVerifiedEmail({ address: email, key });
    expect(account?.emails).toHaveLength(1);
  });

  it('asks for a fresh sign-in before a sensitive change when the sign-in is older than 10 minutes', async () => {
    const browser = new Browser();
    const email = uniqueEmail('stale');
    await signUp(c, browser, email);
    await openAccount(c, browser, email);
    await ageSession(c, browser, 3600);
    const issuer = c.server.services.config.issuer;
    const overview = await browser.follow(`${issuer}/account`);
    const res = await browser.request(`${issuer}/account/phones`, { form: { _csrf: csrfOf(overview.body), phone: newJapaneseMobile().typed } });
    expect(res.res.status).toBe(303);
    expect(res.res.headers.get('location')).toBe('/account/login?return=%2Faccount&reauth=1');
    const login = await browser.follow(new URL(res.res.headers.get('location') as string, issuer).href);
    expect(login.body).toContain('name="email" type="email"'); // prompt=login: the person signs in again
  });

  it('does not text unknown numbers from the login page, yet answers the same way', async () => {
    const browser = new Browser();
    const config = await discover(c.server, c.clientId, c.clientSecret);
    const req = await authorizationRequest(config, REDIRECT);
    const login = await browser.follow(req.url.href);
    const issuer = c.server.services.config.issuer;
    const uid = /\/interaction\/([\w-]+)\//.exec(login.body)?.[1];
    const phonePage = await browser.follow(`${issuer}/interaction/${uid}/phone`);
    const unknown = newJapaneseMobile();
    const before = c.twilio.messages.length;
    const page = await browser.follow(new URL(formAction(phonePage.body, '/phone'), issuer).href, { form: { _csrf: csrfOf(phonePage.body), phone: unknown.typed } });
    expect(page.body).toContain('autocomplete="one-time-code"');
    expect(page.body).toContain(`<span aria-hidden="true">•••-••••-${unknown.e164.slice(-4)}</span>`);
    expect(page.body).toContain(' is registered, we sent a 6-digit code');
    expect(c.twilio.messages.length).toBe(before);
    const wrong = await browser.request(new URL(formAction(page.body, '/sms-code'), issuer).href, { form: { _csrf: csrfOf(page.body), code: '123456' } });
    expect(wrong.res.status).toBe(400);
  });

  it('revokes an application from the account page: its refresh token stops working', async () => {
    const browser = new Browser();
    const email = uniqueEmail('revoke');
    const { config, tokens } = await signUp(c, browser, email);
    await expect(oidc.refreshTokenGrant(config, tokens.refresh_token as string)).resolves.toBeDefined();
    const overview = await openAccount(c, browser, email);
    expect(overview.body).toContain('Shop');
    const action = formAction(overview.body, '/revoke');
    const done = await browser.follow(new URL(action, c.server.services.config.issuer).href, { form: { _csrf: csrfOf(overview.body) } });
    expect(done.body).toContain("The application&#39;s access was revoked.");
    await expect(oidc.refreshTokenGrant(config, tokens.refresh_token as string)).rejects.toMatchObject({ error: 'invalid_grant' });
  });

  it.each([
    ['an invalid number', TWILIO_INVALID_NUMBER, undefined, 'This number cannot receive SMS'],
    ['an unreachable number', TWILIO_UNREACHABLE_NUMBER, undefined, 'We could not reach this number'],
    ['Twilio rate limiting (429)', undefined, 429, 'Our SMS provider is busy'],
    ['a Twilio outage (503)', undefined, 503, 'We could not send the SMS'],
    ['a Twilio timeout', undefined, 'hang', 'We could not send the SMS'],
  ] as const)('turns %s into a clear message and stores nothing', async (_label, number, failure, message) => {
    const browser = new Browser();
    const email = uniqueEmail('twerr');
    await signUp(c, browser, email);
    const issuer = c.server.services.config.issuer;
    const form = await openAccount(c, browser, email, '/account/phones/new');
    if (failure) c.twilio.failNext.push(failure);
    const res = await browser.follow(`${issuer}/account/phones`, { form: { _csrf: csrfOf(form.body), phone: number ?? newJapaneseMobile().typed } });
    expect(res.res.status).toBe(503);
    expect(res.body).toContain(message);
    const account = await c.server.services.accounts.findAccountByVerifiedEmail({ address: email, key: email.toLowerCase() });
    expect(account?.phones).toEqual([]);
    const live = await c.server.services.db.pool.query(
      `SELECT count(*)::int AS n FROM otp_challenges WHERE account_id = $1 AND purpose = 'add-phone' AND consumed_at IS NULL`, [account?.id]);
    expect(live.rows[0].n).toBe(0);
  });
});

describe(`Twilio Verify mode (${describeBackends()})`, () => {
  let c: Ctx;
  beforeAll(async () => { c = await setup({}, true); });
  afterAll(async () => teardown(c));

  it('lets Twilio own the code: a wrong code is refused, the right one adds the phone', async () => {
    const browser = new Browser();
    const email = uniqueEmail('verify');
    await signUp(c, browser, email);
    const issuer = c.server.services.config.issuer;
    const form = await openAccount(c, browser, email, '/account/phones/new');
    const phone = newJapaneseMobile();
    const codePage = await browser.follow(`${issuer}/account/phones`, { form: { _csrf: csrfOf(form.body), phone: phone.typed } });
    expect(c.twilio.requests.at(-1)?.path).toBe(`/v2/Services/${c.twilio.verifyServiceSid}/Verifications`);
    const code = c.twilio.verifyCodeFor(phone.e164) as string;
    const wrongCode = code === '000000' ? '111111' : '000000';
    const wrong = await browser.request(`${issuer}/account/phones/verify`, { form: { _csrf: csrfOf(codePage.body), code: wrongCode } });
    expect(wrong.res.status).toBe(400);
    expect(wrong.body).toContain('4 tries left');
    const done = await browser.follow(`${issuer}/account/phones/verify`, { form: { _csrf: csrfOf(codePage.body), code } });
    expect(done.body).toContain('The phone number was added.');
    expect(c.twilio.requests.at(-1)?.path).toBe(`/v2/Services/${c.twilio.verifyServiceSid}/VerificationCheck`);
  });
});
