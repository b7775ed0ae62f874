import * as oidc from 'openid-client';
import { HandledEventStore } from '../../src/accounts/handled-event-store.js';
import type { RunningServer } from '../../src/server.js';
import { FakeApple } from '../fakes/apple.js';
import { FakeGoogle, type SecurityEventClaims } from '../fakes/google.js';
import { SmtpSink } from '../fakes/smtp-sink.js';
import { readAutoPostForm, type IdTokenTamper } from '../fakes/upstream-emulator.js';
import { Browser, csrfOf, formAction } from '../support/browserless.js';
import { describeBackends } from '../support/harness.js';
import { authorizationRequest, signInWithEmail, startStage, stillSignedIn as isStillSignedIn, type Stage } from './support.js';

const REDIRECT = 'http://127.0.0.1:9/cb';
type Page = { res: Response; body: string; url: string };
const isCallback = (u: string) => u.startsWith(REDIRECT);
const uniqueSub = () => `${Date.now()}${Math.floor(Math.random() * 1e9)}`;
const OTHER_AUDIENCE = 'other-client.apps.googleusercontent.com';

// Google Cross-Account Protection at POST /upstream/google/risc: Security Event Tokens signed by the
// Google emulator's real JWKS key (discovered through its risc-configuration), against identities
// made by real Google sign-ins, and the sessions and tokens those sign-ins produced.
describe(`Google Cross-Account Protection (RISC) receiver (${describeBackends()})`, () => {
  let stage: Stage;
  let server: RunningServer;
  let sink: SmtpSink;
  let google: FakeGoogle;
  let apple: FakeApple;
  let issuer: string;
  let client: oidc.Configuration;
  let handled: HandledEventStore;

  beforeAll(async () => {
    stage = await startStage({ google: true, apple: true, relyingParty: false, env: { GOOGLE_RISC_AUDIENCES: OTHER_AUDIENCE } });
    ({ server, sink, google, apple, issuer } = stage);
    client = await stage.relyingPartyClient({
      client_name: 'Shop', redirect_uris: [REDIRECT], first_party: true, grant_types: ['authorization_code', 'refresh_token'],
    });
    handled = new HandledEventStore(server.services.db.pool, 'google_risc_events');
  });
  afterAll(() => stage?.close());

  const at = (page: Page, contains: string) => new URL(formAction(page.body, contains), issuer).href;

  async function finish(browser: Browser, page: Page): Promise<Page> {
    let next = page;
    if (next.url.endsWith('/upstream-signup')) next = await browser.follow(at(next, '/upstream-signup'), { form: { _csrf: csrfOf(next.body) } }, isCallback);
    if (next.body.includes('/passkey/register/options')) {
      const skip = /<a class="button secondary" href="([^"]+)"/.exec(next.body)?.[1] as string;
      next = await browser.follow(new URL(skip.replace(/&amp;/g, '&'), issuer).href, {}, isCallback);
    }
    for (let i = 0; i < 3 && !isCallback(next.url) && next.body.includes('/consent"'); i++) {
      next = await browser.follow(at(next, '/consent'), { form: { _csrf: csrfOf(next.body) } }, isCallback);
    }
    return next;
  }

  /** Signs in with Google in `browser` (signing up on the first time); the page it ends on, and tokens when it got back. */
  async function googleSignIn(browser: Browser, sub: string, email: string) {
    google.nextUser({ sub, email, email_verified: true });
    const req = await authorizationRequest(client, REDIRECT, { scope: 'openid email offline_access', prompt: 'consent' });
    const login = await browser.follow(req.url.href);
    const page = await finish(browser, await browser.follow(at(login, '/upstream/google'), { form: { _csrf: csrfOf(login.body) } }, isCallback));
    if (!isCallback(page.url)) return { page, tokens: undefined };
    const tokens = await oidc.authorizationCodeGrant(client, new URL(page.url), { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    return { page, tokens };
  }

  /** A new account made by signing up with Google; with a gmail address it has that email as a second way in. */
  async function googleAccount(opts: { emailToo: boolean } = { emailToo: true }) {
    const sub = uniqueSub();
    const email = opts.emailToo ? `risc${sub}@gmail.com` : `risc${sub}@example.test`; // example.test is not vouched: not registered
    const browser = new Browser();
    const { tokens } = await googleSignIn(browser, sub, email);
    if (!tokens) throw new Error('the Google signup did not finish');
    const identity = await identityOf(sub);
    if (!identity) throw new Error('the Google identity was not linked');
    if (opts.emailToo) expect((await sink.nextMailTo(email)).subject).toBe('Welcome to Tsunagi'); // out of the way of the codes
    return { sub, email, browser, tokens, identity, accountId: identity.accountId };
  }

  /** The same account signed in by email code in another browser (a session that did not begin with Google). */
  async function emailSession(email: string) {
    const browser = new Browser();
    const req = await authorizationRequest(client, REDIRECT, { scope: 'openid email' });
    await signInWithEmail(browser, issuer, req.url, REDIRECT, email, sink);
    return browser;
  }

  async function deliver(body: string, contentType = 'application/secevent+jwt'): Promise<{ status: number; json: Record<string, unknown> | undefined }> {
    const res = await fetch(`${issuer}/upstream/google/risc`, { method: 'POST', headers: { 'content-type': contentType }, body });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) as Record<string, unknown> : undefined };
  }
  /** Google reports the account hijacked; the mail that tells the person is taken out of the way of later codes. */
  async function reportHijacked(sub: string, email: string) {
    expect(await send({ type: 'account-disabled', sub, reason: 'hijacking' })).toBe(202);
    expect((await sink.nextMailTo(email)).subject).toBe('Google sign-in to your Tsunagi account was paused');
  }
  const send = async (event: SecurityEventClaims, tamper?: IdTokenTamper) => (await deliver(await google.signSecurityEvent(event, tamper))).status;
  const identityOf = (sub: string) => server.services.identities.findByIssuerSubject(google.issuer, sub);
  const audit = (accountId: string, type: string) => server.services.accounts.listAuditEvents({ accountId, type });
  const userinfoWorks = async (accessToken: string, sub: string) => oidc.fetchUserInfo(client, accessToken, sub).then(() => true, () => false);
  const refreshWorks = async (refreshToken: string | undefined) => oidc.refreshTokenGrant(client, refreshToken as string).then(() => true, () => false);

  const stillSignedIn = (browser: Browser) => isStillSignedIn(browser, client, REDIRECT);

  it('on account-disabled "hijacking" pauses Google, ends the sessions that began with it and their tokens, mails the person, and keeps an email session', async () => {
    const { sub, email, browser, tokens, accountId } = await googleAccount();
    const byEmail = await emailSession(email);
    expect(await stillSignedIn(browser)).toBe(true);

    expect(await send({ type: 'account-disabled', sub, reason: 'hijacking' })).toBe(202);
    expect((await identityOf(sub))?.signInPaused).toMatchObject({ reason: 'hijacking' });
    expect(await stillSignedIn(browser)).toBe(false);
    expect(await userinfoWorks(tokens.access_token, accountId)).toBe(false);
    expect(await refreshWorks(tokens.refresh_token)).toBe(false);
    expect(await stillSignedIn(byEmail)).toBe(true);
    expect((await audit(accountId, 'upstream_paused'))[0]?.data).toMatchObject({ provider: 'google', by: 'google_risc', event: 'account-disabled', reason: 'hijacking' });
    const mail = await sink.nextMailTo(email);
    expect(mail.subject).toBe('Google sign-in to your Tsunagi account was paused');
    expect(mail.text).toContain('turn Google sign-in back on from your account page');
  });

  it('answers a Google sign-in of a paused identity with a page saying how to get back in, and the person re-enables it from the account page', async () => {
    const { sub, email, accountId } = await googleAccount();
    await reportHijacked(sub, email);

    const refused = await googleSignIn(new Browser(), sub, email);
    expect(refused.tokens).toBeUndefined();
    expect(refused.page.res.status).toBe(400);
    expect(refused.page.body).toContain('Google sign-in is paused for this account because Google reported a problem');
    expect(refused.page.body).toContain('turn Google sign-in back on from your account page');
    expect(refused.page.body).toMatch(/href="\/interaction\/[^"]+\?choose=1"/); // sign in another way
    expect(await audit(accountId, 'upstream_sign_in_refused')).toHaveLength(1);

    // Signed in another way (email code), the account page shows the state and the way back, in en and ja.
    const byEmail = await emailSession(email);
    const page = await byEmail.follow(`${issuer}/account`);
    expect(page.body).toContain('Google sign-in paused because Google reported a problem with that account');
    const identity = await identityOf(sub);
    expect(page.body).toContain(`/account/providers/${identity?.id}/resume`);
    const resumed = await byEmail.follow(at(page, `/providers/${identity?.id}/resume`), { form: { _csrf: csrfOf(page.body) } });
    expect(resumed.url).toContain('notice=upstream_resumed');
    expect((await identityOf(sub))?.signInPaused).toBeUndefined();
    expect(await audit(accountId, 'upstream_resumed')).toHaveLength(1);
    expect((await sink.nextMailTo(email)).subject).toBe('Google sign-in to your Tsunagi account is on again');

    const again = await googleSignIn(new Browser(), sub, email);
    expect(again.tokens?.claims()?.sub).toBe(accountId);
  });

  it('shows the paused state on the account page in Japanese', async () => {
    const { sub, email } = await googleAccount();
    await reportHijacked(sub, email);
    const byEmail = new Browser({ 'accept-language': 'ja' });
    const req = await authorizationRequest(client, REDIRECT, { scope: 'openid email', ui_locales: 'ja' });
    await signInWithEmail(byEmail, issuer, req.url, REDIRECT, email, sink);
    const page = await byEmail.follow(`${issuer}/account`);
    expect(page.body).toContain('Google からそのアカウントに問題があると報告があったため、Google ログインを一時停止しています');
    expect(page.body).toContain('Google ログインを再開');
  });

  it('does not count a paused Google as a way in: the email cannot be removed, the paused Google can be unlinked', async () => {
    const { sub, email, identity } = await googleAccount();
    await reportHijacked(sub, email);
    const byEmail = await emailSession(email);
    let page = await byEmail.follow(`${issuer}/account`);
    expect(page.body).toContain('id="last-method"');
    const kept = await byEmail.follow(at(page, '/emails/remove'), { form: { _csrf: csrfOf(page.body), email_key: email } });
    expect(kept.url).toContain('notice=last_method');
    expect((await server.services.accounts.findAccountById(identity.accountId))?.emails.map((e) => e.address)).toEqual([email]);
    page = await byEmail.follow(`${issuer}/account`);
    const unlinked = await byEmail.follow(at(page, `/providers/${identity.id}/unlink`), { form: { _csrf: csrfOf(page.body) } });
    expect(unlinked.url).toContain('notice=upstream_unlinked');
    expect(await identityOf(sub)).toBeUndefined();
  });

  it('never lets account-enabled lift a hijacking pause, nor the ended Google session re-enable it', async () => {
    const { sub, browser, identity, accountId } = await googleAccount();
    expect(await send({ type: 'account-disabled', sub, reason: 'hijacking' })).toBe(202);
    expect(await send({ type: 'account-enabled', sub })).toBe(202);
    expect((await identityOf(sub))?.signInPaused?.reason).toBe('hijacking');
    expect((await audit(accountId, 'upstream_notification_ignored'))[0]?.data).toMatchObject({ event: 'account-enabled', reason: 'nothing_to_resume' });
    // The Google session was ended: re-enabling from that browser means signing in (another way) first.
    const login = await browser.follow((await authorizationRequest(client, REDIRECT, { scope: 'openid' })).url.href);
    const tried = await browser.request(`${issuer}/account/providers/${identity.id}/resume`, { form: { _csrf: csrfOf(login.body) } });
    expect(tried.res.status).toBe(303);
    expect(tried.res.headers.get('location')).toMatch(/^\/account\/login\?/);
    expect((await identityOf(sub))?.signInPaused?.reason).toBe('hijacking');
  });

  it('refuses a hijacked Google identity offered as proof on the link screen, even when the proof started before the report', async () => {
    const { sub, email } = await googleAccount();
    google.addUser({ sub, email, email_verified: true });
    const appleSub = `001.${uniqueSub()}`;
    const linkScreen = async () => {
      apple.nextUser({ sub: appleSub, email, email_verified: 'true', is_private_email: 'false' });
      const browser = new Browser();
      const req = await authorizationRequest(client, REDIRECT, { scope: 'openid email' });
      const login = await browser.follow(req.url.href);
      const toApple = await browser.follow(at(login, '/upstream/apple'), { form: { _csrf: csrfOf(login.body) } }, isCallback);
      const { action, fields } = readAutoPostForm(toApple.body); // Apple's cross-site form post back
      const page = await browser.follow(action, { form: fields }, isCallback);
      expect(page.url).toMatch(/\/link$/);
      return { browser, page };
    };

    // Started before the report: off to Google, which answers after Google reported the hijacking.
    const early = await linkScreen();
    expect(early.page.body).toContain('/link/upstream/google');
    const atGoogle = await early.browser.follow(at(early.page, '/link/upstream/google'), { form: { _csrf: csrfOf(early.page.body) } }, (u) => u.startsWith(google.url));
    expect(await send({ type: 'account-disabled', sub, reason: 'hijacking' })).toBe(202);
    const answered = await early.browser.follow(atGoogle.url, {}, isCallback);
    expect(answered.res.status).toBe(400);
    expect(answered.body).toContain('Google sign-in is paused for this account');
    expect(await server.services.identities.findByIssuerSubject(apple.issuer, appleSub)).toBeUndefined();

    // After the report: not offered, and refused when asked for anyway.
    const later = await linkScreen();
    expect(later.page.body).not.toContain('/link/upstream/google');
    const forced = await later.browser.follow(`${later.page.url}/upstream/google`, { form: { _csrf: csrfOf(later.page.body) } }, isCallback);
    expect(forced.res.status).toBe(400);
    expect(forced.body).toContain('Google sign-in is paused for this account');
    expect(await server.services.identities.findByIssuerSubject(apple.issuer, appleSub)).toBeUndefined();
  });

  it('on account-disabled (not hijacking) unlinks Google when the account has another way in, and ends the Google sessions and their tokens', async () => {
    const { sub, email, browser, tokens, accountId } = await googleAccount();
    expect(await send({ type: 'account-disabled', sub, reason: 'bulk-account' })).toBe(202);
    expect(await identityOf(sub)).toBeUndefined();
    expect(await server.services.accounts.countSignInMethods(accountId)).toBe(1); // the email stays
    expect(await stillSignedIn(browser)).toBe(false);
    expect(await userinfoWorks(tokens.access_token, accountId)).toBe(false);
    expect((await audit(accountId, 'upstream_unlinked'))[0]?.data).toMatchObject({ provider: 'google', event: 'account-disabled', lastMethod: false });
    // Signing in with that Google account again no longer reaches the account by itself: the link offer asks for proof.
    const again = await googleSignIn(new Browser(), sub, email);
    expect(again.page.url).toMatch(/\/link$/);
  });

  it('on account-purged unlinks Google even when it was the last way in, keeping the account', async () => {
    const { sub, browser, accountId } = await googleAccount({ emailToo: false });
    expect(await server.services.accounts.countSignInMethods(accountId)).toBe(1);
    expect(await send({ type: 'account-purged', sub })).toBe(202);
    expect(await identityOf(sub)).toBeUndefined();
    expect(await server.services.accounts.findAccountById(accountId)).toBeDefined();
    expect(await stillSignedIn(browser)).toBe(false);
    expect((await audit(accountId, 'upstream_unlinked'))[0]?.data).toMatchObject({ event: 'account-purged', lastMethod: true });
  });

  it('pauses instead of unlinking the last way in on account-disabled, with a clear page at sign-in, and account-enabled lifts it', async () => {
    const { sub, email, browser, accountId } = await googleAccount({ emailToo: false });
    expect(await send({ type: 'account-disabled', sub })).toBe(202);
    expect((await identityOf(sub))?.signInPaused).toMatchObject({ reason: 'disabled' });
    expect(await stillSignedIn(browser)).toBe(false);
    const refused = await googleSignIn(new Browser(), sub, email);
    expect(refused.page.res.status).toBe(400);
    expect(refused.page.body).toContain('Google disabled that Google account');
    expect(refused.page.body).toContain('It works again once Google enables the account');

    expect(await send({ type: 'account-enabled', sub })).toBe(202);
    expect((await identityOf(sub))?.signInPaused).toBeUndefined();
    expect(await audit(accountId, 'upstream_resumed')).toHaveLength(1);
    expect((await googleSignIn(new Browser(), sub, email)).tokens?.claims()?.sub).toBe(accountId);
  });

  it.each(['sessions-revoked', 'tokens-revoked', 'account-credential-change-required'])('on %s ends the sessions that began with Google; grants and tokens stay', async (type) => {
    const { sub, email, browser, tokens, accountId } = await googleAccount();
    const byEmail = await emailSession(email);
    expect(await send({ type, sub })).toBe(202);
    expect(await stillSignedIn(browser)).toBe(false);
    expect(await stillSignedIn(byEmail)).toBe(true);
    expect(await userinfoWorks(tokens.access_token, accountId)).toBe(true);
    expect(await refreshWorks(tokens.refresh_token)).toBe(true);
    expect((await identityOf(sub))?.signInPaused).toBeUndefined();
    expect((await audit(accountId, 'upstream_sessions_ended'))[0]?.data).toMatchObject({ provider: 'google', event: type });
  });

  it('handles a SET once by its jti: a replay (the same SET, or re-signed) is accepted and changes nothing again', async () => {
    const { sub, email, browser, accountId } = await googleAccount();
    const set = await google.signSecurityEvent({ type: 'sessions-revoked', sub });
    expect((await deliver(set)).status).toBe(202);
    expect(await stillSignedIn(browser)).toBe(false);
    // A new Google session after the event; the replay must not end it.
    const fresh = new Browser();
    expect((await googleSignIn(fresh, sub, email)).tokens).toBeDefined();
    expect((await deliver(set)).status).toBe(202);
    const jti = JSON.parse(Buffer.from(set.split('.')[1] as string, 'base64url').toString()) as { jti: string };
    expect(await send({ type: 'sessions-revoked', sub, jti: jti.jti })).toBe(202);
    expect((await Promise.all([deliver(set), deliver(set)])).map((r) => r.status)).toEqual([202, 202]);
    expect(await stillSignedIn(fresh)).toBe(true);
    expect(await audit(accountId, 'upstream_sessions_ended')).toHaveLength(1);
    expect(await handled.find(jti.jti)).toMatchObject({ outcome: 'sessions_ended', accountId, completedAt: expect.any(Date) });
  });

  it('keeps the Google sessions that began after a sessions-revoked event (a delayed delivery)', async () => {
    const { sub, browser, accountId } = await googleAccount();
    // Google revoked the sessions two minutes before this sign-in; the push arrives only now.
    expect(await send({ type: 'sessions-revoked', sub }, { shiftSeconds: -120 })).toBe(202);
    expect(await stillSignedIn(browser)).toBe(true);
    expect(await audit(accountId, 'upstream_sessions_ended')).toHaveLength(1);
  });

  it('answers verification with 202 and records it', async () => {
    const jti = `verify-${uniqueSub()}`;
    expect(await send({ type: 'verification', state: 'hello', jti })).toBe(202);
    expect(await handled.find(jti)).toMatchObject({ type: 'verification', outcome: 'verified' });
  });

  it('accepts an unknown subject and another configured audience, changing nothing', async () => {
    const jti = `unknown-${uniqueSub()}`;
    expect(await send({ type: 'account-disabled', sub: uniqueSub(), reason: 'hijacking', jti })).toBe(202);
    expect(await handled.find(jti)).toMatchObject({ outcome: 'unknown_subject', accountId: undefined });
    const { sub } = await googleAccount();
    expect(await send({ type: 'account-disabled', sub, reason: 'hijacking' }, { aud: OTHER_AUDIENCE })).toBe(202);
    expect((await identityOf(sub))?.signInPaused?.reason).toBe('hijacking');
  });

  it('refuses bad signatures, keys, issuers, audiences, iat, event types and bodies with 400 and an RFC 8935 error, changing nothing', async () => {
    const { sub, browser, accountId } = await googleAccount();
    const jti = `refused-${uniqueSub()}`;
    const hijack: SecurityEventClaims = { type: 'account-disabled', sub, reason: 'hijacking', jti };
    const refusals: Array<[string, Promise<string> | string, string]> = [
      ['bad signature', google.signSecurityEvent(hijack, { badSignature: true }), 'authentication_failed'],
      ['unknown key', google.signSecurityEvent(hijack, { unknownKid: true }), 'invalid_key'],
      ['alg none', google.signSecurityEvent(hijack, { algNone: true }), 'invalid_key'],
      ['HS256 with the client secret', google.signSecurityEvent(hijack, { hmacWithSecret: google.clientSecret }), 'invalid_key'],
      ['another issuer', google.signSecurityEvent(hijack, { iss: 'https://accounts.google.example/' }), 'invalid_issuer'],
      ['another audience', google.signSecurityEvent(hijack, { aud: 'someone-else.apps.googleusercontent.com' }), 'invalid_audience'],
      ['iat too old', google.signSecurityEvent(hijack, { shiftSeconds: -4 * 24 * 3600 }), 'invalid_request'],
      ['iat in the future', google.signSecurityEvent(hijack, { shiftSeconds: 3600 }), 'invalid_request'],
      ['no jti', google.signSecurityEvent(hijack, { claims: { jti: undefined } }), 'invalid_request'],
      ['unknown event type', google.signSecurityEvent({ ...hijack, type: 'account-renamed' }), 'invalid_request'],
      ['two events', google.signSecurityEvent(hijack, { claims: { events: {
        'https://schemas.openid.net/secevent/risc/event-type/account-disabled': { subject: { subject_type: 'iss-sub', iss: google.riscIssuer, sub }, reason: 'hijacking' },
        'https://schemas.openid.net/secevent/risc/event-type/sessions-revoked': { subject: { subject_type: 'iss-sub', iss: google.riscIssuer, sub } },
      } } }), 'invalid_request'],
      ['an email subject', google.signSecurityEvent(hijack, { claims: { events: {
        'https://schemas.openid.net/secevent/risc/event-type/account-disabled': { subject: { subject_type: 'email', email: 'a@gmail.com' }, reason: 'hijacking' },
      } } }), 'invalid_request'],
      ['an ID token', google.signIdToken({ iss: google.riscIssuer, aud: google.clientId, sub, jti }), 'invalid_request'],
      ['not a JWT', 'not-a-jwt', 'invalid_request'],
      ['three dots of nothing', 'a.b.c', 'invalid_request'],
    ];
    for (const [name, made, err] of refusals) {
      const { status, json } = await deliver(await made);
      expect({ name, status, err: json?.err, described: typeof json?.description === 'string' }).toEqual({ name, status: 400, err, described: true });
    }
    const huge = await deliver(`${'a'.repeat(20_000)}.b.c`);
    expect([huge.status, huge.json?.err]).toEqual([400, 'invalid_request']);
    const asJson = await deliver(JSON.stringify({ payload: await google.signSecurityEvent(hijack) }), 'application/json');
    expect([asJson.status, asJson.json?.err]).toEqual([400, 'invalid_request']);

    expect((await identityOf(sub))?.signInPaused).toBeUndefined();
    expect(await stillSignedIn(browser)).toBe(true);
    expect(await audit(accountId, 'upstream_paused')).toEqual([]);
    expect(await handled.find(jti)).toBeUndefined();
    // The refusals left no record behind: the genuine SET with that jti is still applied.
    expect(await send(hijack)).toBe(202);
    expect((await identityOf(sub))?.signInPaused?.reason).toBe('hijacking');
  });
});
