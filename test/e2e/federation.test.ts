import * as oidc from 'openid-client';
import type { RunningServer } from '../../src/server.js';
import { FakeApple } from '../fakes/apple.js';
import { FakeGoogle } from '../fakes/google.js';
import { SmtpSink, codeFrom } from '../fakes/smtp-sink.js';
import { Browser, csrfOf, formAction } from '../support/browserless.js';
import { describeBackends, uniqueEmail } from '../support/harness.js';
import { authorizationRequest, signInWithEmail, startStage, type AuthRequest, type Stage } from './support.js';

const REDIRECT = 'http://127.0.0.1:9/cb';
type Page = { res: Response; body: string; url: string };
const isCallback = (u: string) => u.startsWith(REDIRECT);
const uniqueSub = () => `${Date.now()}${Math.floor(Math.random() * 1e9)}`;

// Sign-in with Google and Apple against local emulators (real HTTP, real signed ID tokens), through
// every branch of the decision in src/flows/upstream.ts: linked, email match -> link with proof,
// signup confirmation, private relay + require_email, and the failures that must change nothing.
describe(`federation with Google and Apple (${describeBackends()})`, () => {
  let stage: Stage;
  let server: RunningServer;
  let sink: SmtpSink;
  let google: FakeGoogle;
  let apple: FakeApple;
  let issuer: string;
  let client: oidc.Configuration;
  let needsEmail: oidc.Configuration;

  beforeAll(async () => {
    stage = await startStage({ google: true, apple: true, relyingParty: false });
    ({ server, sink, google, apple, issuer } = stage);
    client = await stage.relyingPartyClient({ client_name: 'Shop', redirect_uris: [REDIRECT], first_party: true });
    needsEmail = await stage.relyingPartyClient({ client_name: 'Mailer', redirect_uris: [REDIRECT], first_party: true, require_email: true });
  });
  afterAll(() => stage?.close());

  const at = (page: Page, contains: string) => new URL(formAction(page.body, contains), issuer).href;

  /** Opens the login page of a new authorization request and presses "Continue with <provider>". */
  async function startUpstream(browser: Browser, provider: 'google' | 'apple', config = client, params: Record<string, string> = {}) {
    const req = await authorizationRequest(config, REDIRECT, { scope: 'openid email profile', ...params });
    const login = await browser.follow(req.url.href);
    expect(login.body).toContain(`/upstream/${provider}"`);
    const page = await browser.follow(at(login, `/upstream/${provider}`), { form: { _csrf: csrfOf(login.body) } }, isCallback);
    return { req, page: provider === 'apple' ? await postApple(browser, page) : page };
  }

  /** Apple answers with an HTML form that posts back cross-site: submit it as the browser would (no SameSite=Lax cookie on it). */
  async function postApple(browser: Browser, page: Page): Promise<Page> {
    const action = /<form method="post" action="([^"]+)"/.exec(page.body)?.[1]?.replace(/&amp;/g, '&');
    if (!action) return page;
    const form = Object.fromEntries([...page.body.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)]
      .map((m) => [m[1] as string, (m[2] as string).replace(/&quot;/g, '"').replace(/&amp;/g, '&')]));
    return browser.follow(action, { form, crossSitePost: true }, isCallback);
  }

  async function tokens(config: oidc.Configuration, req: AuthRequest, page: Page) {
    if (!isCallback(page.url)) throw new Error(`not back at the client: ${page.res.status} ${page.url}: ${page.body.slice(0, 400)}`);
    return oidc.authorizationCodeGrant(config, new URL(page.url), { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
  }

  /** Confirms the signup screen and skips the passkey offer. */
  async function confirmSignup(browser: Browser, page: Page): Promise<Page> {
    expect(page.url).toMatch(/\/upstream-signup$/);
    let next = await browser.follow(at(page, '/upstream-signup'), { form: { _csrf: csrfOf(page.body) } }, isCallback);
    if (next.body.includes('/passkey/register/options')) {
      const skip = /<a class="button secondary" href="([^"]+)"/.exec(next.body)?.[1] as string;
      next = await browser.follow(new URL(skip.replace(/&amp;/g, '&'), issuer).href, {}, isCallback);
    }
    return next;
  }

  // Other test files write to the same database at the same time (CI): never count all accounts,
  // look for the ones a test made or must not have made.
  const accountByEmail = (email: string) => server.services.accounts.findAccountByVerifiedEmail({ address: email, key: email.toLowerCase() });
  const identityOf = (iss: string, sub: string) => server.services.identities.findByIssuerSubject(iss, sub);

  /** An account made the ordinary way: an email code and a signup confirmation. */
  async function emailAccount(email: string) {
    const req = await authorizationRequest(client, REDIRECT, { scope: 'openid email' });
    const { callback } = await signInWithEmail(new Browser(), issuer, req.url, REDIRECT, email, sink);
    const t = await oidc.authorizationCodeGrant(client, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    const account = await server.services.accounts.findAccountByVerifiedEmail({ address: email, key: email });
    if (!account) throw new Error('no account');
    return { account, sub: t.claims()?.sub as string };
  }

  it('signs up a new Google user after the confirmation screen, then signs the linked identity straight in', async () => {
    const sub = uniqueSub();
    const email = `g${sub}@gmail.com`;
    google.nextUser({ sub, email, email_verified: true, name: 'Hana Sato' });
    const browser = new Browser();
    const { req, page } = await startUpstream(browser, 'google');
    expect(page.body).toContain(email);
    expect(page.body).toContain('Hana Sato');
    // Nothing exists before the confirmation.
    expect(await accountByEmail(email)).toBeUndefined();
    expect(await identityOf(google.issuer, sub)).toBeUndefined();
    const sent = google.authorizeRequests.at(-1)?.query;
    expect(sent).toMatchObject({ response_type: 'code', code_challenge_method: 'S256', scope: expect.stringContaining('openid') });
    expect(sent?.nonce).toBeTruthy();
    expect(sent?.state).toBeTruthy();

    const first = await tokens(client, req, await confirmSignup(browser, page));
    expect(first.claims()).toMatchObject({ email, email_verified: true, amr: ['fed'] });
    expect((await accountByEmail(email))?.id).toBe(first.claims()?.sub);
    const identity = await identityOf(google.issuer, sub);
    expect(identity?.accountId).toBe(first.claims()?.sub);

    // Linked: straight in, no screens, and what Google says now is stored.
    google.nextUser({ sub, email, email_verified: true, name: 'Hana Sato-Ito' });
    const again = await startUpstream(new Browser(), 'google');
    const second = await tokens(client, again.req, again.page);
    expect(second.claims()?.sub).toBe(first.claims()?.sub);
    expect(second.claims()?.amr).toEqual(['fed']);
    expect((await identityOf(google.issuer, sub))?.name).toBe('Hana Sato-Ito');
  });

  it('offers to link when a verified Google email matches an account, and links only after an email code for that account', async () => {
    const email = `link${uniqueSub()}@gmail.com`;
    const { account, sub: accountSub } = await emailAccount(email);
    const googleSub = uniqueSub();
    google.nextUser({ sub: googleSub, email, email_verified: true });
    const browser = new Browser();
    const { req, page } = await startUpstream(browser, 'google');
    expect(page.url).toMatch(/\/link$/);
    expect(page.body).toContain(`l•••@gmail.com`); // the account's address, masked
    expect(await identityOf(google.issuer, googleSub)).toBeUndefined();

    const codePage = await browser.follow(at(page, '/link/email'), { form: { _csrf: csrfOf(page.body), key: email } });
    expect(codePage.body).toContain('autocomplete="one-time-code"');
    const mail = await sink.nextMailTo(email);
    // A wrong code links nothing.
    const wrong = codeFrom(mail) === '000000' ? '111111' : '000000';
    const refused = await browser.follow(at(codePage, '/link/code'), { form: { _csrf: csrfOf(codePage.body), code: wrong } });
    expect(refused.res.status).toBe(400);
    expect(await identityOf(google.issuer, googleSub)).toBeUndefined();

    const done = await browser.follow(at(refused, '/link/code'), { form: { _csrf: csrfOf(refused.body), code: codeFrom(mail) } }, isCallback);
    const t = await tokens(client, req, done);
    expect(t.claims()?.sub).toBe(accountSub);
    expect(t.claims()?.amr).toEqual(['fed', 'otp']);
    expect((await identityOf(google.issuer, googleSub))?.accountId).toBe(account.id);
    expect((await accountByEmail(email))?.id).toBe(account.id);
    const audit = await server.services.accounts.listAuditEvents({ accountId: account.id, type: 'upstream_linked' });
    expect(audit[0]?.data).toMatchObject({ provider: 'google', proof: 'email_otp' });
    expect((await sink.nextMailTo(email)).subject).toBe('A sign-in provider was linked to your Tsunagi account');
  });

  it('answers a rate-limited link code with 429 and Retry-After, like every other code step, and links nothing', async () => {
    const email = `linklimit${uniqueSub()}@gmail.com`;
    await emailAccount(email); // one code already went to this address
    const googleSub = uniqueSub();
    google.nextUser({ sub: googleSub, email, email_verified: true });
    const browser = new Browser();
    const { page } = await startUpstream(browser, 'google');
    expect(page.url).toMatch(/\/link$/);
    const statuses: number[] = [];
    let last: Response | undefined;
    let body = '';
    // The per-address limit (EMAIL_SEND_LIMITS.perAddress) is 5 sends: the sign-in's code and four here, then refused.
    for (let i = 0; i < 5; i++) {
      const res = await browser.request(at(page, '/link/email'), { form: { _csrf: csrfOf(page.body), key: email } });
      statuses.push(res.res.status);
      last = res.res;
      body = res.body;
    }
    expect(statuses).toEqual([303, 303, 303, 303, 429]);
    expect(Number(last?.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(body).toContain('Too many codes were requested');
    expect(await identityOf(google.issuer, googleSub)).toBeUndefined();
  });

  it('goes straight to the provider named by idp_hint, passing login_hint on to Google', async () => {
    const sub = uniqueSub();
    const email = `hint${sub}@gmail.com`;
    google.nextUser({ sub, email, email_verified: true });
    const req = await authorizationRequest(client, REDIRECT, { scope: 'openid email', idp_hint: 'google', login_hint: email });
    const browser = new Browser();
    const page = await browser.follow(req.url.href, {}, isCallback);
    expect(page.url).toMatch(/\/upstream-signup$/); // no login page on the way
    expect(google.authorizeRequests.at(-1)?.query.login_hint).toBe(email);
    // After a failure the person can choose another way: no loop back to Google.
    google.failNextAuthorize.push('access_denied');
    const again = await authorizationRequest(client, REDIRECT, { scope: 'openid email', idp_hint: 'google' });
    const failed = await browser.follow(again.url.href, {}, isCallback);
    expect(failed.res.status).toBe(400);
    const retry = /href="(\/interaction\/[^"]+\?choose=1)"/.exec(failed.body)?.[1] as string;
    const choose = await browser.follow(new URL(retry, issuer).href);
    expect(choose.body).toContain('name="email" type="email"');
  });

  it('declining the link creates nothing, links nothing, and goes back to the login page', async () => {
    const email = `decline${uniqueSub()}@gmail.com`;
    const { account } = await emailAccount(email);
    const googleSub = uniqueSub();
    google.nextUser({ sub: googleSub, email, email_verified: true });
    const browser = new Browser();
    const { page } = await startUpstream(browser, 'google');
    const back = await browser.follow(at(page, '/link/decline'), { form: { _csrf: csrfOf(page.body) } });
    expect(back.body).toContain('name="email" type="email"');
    expect(await identityOf(google.issuer, googleSub)).toBeUndefined();
    expect((await accountByEmail(email))?.id).toBe(account.id);
    // The declined decision is gone: its page no longer opens.
    const link = await browser.follow(`${back.url.replace(/\/?$/, '')}/link`);
    expect(link.body).not.toContain('/link/email');
  });

  it('never matches on an email Google does not vouch for (no gmail, no hd): a separate signup without that email', async () => {
    const email = uniqueEmail('workspace-less');
    const { account } = await emailAccount(email);
    const googleSub = uniqueSub();
    google.nextUser({ sub: googleSub, email, email_verified: true });
    const browser = new Browser();
    const { req, page } = await startUpstream(browser, 'google');
    expect(page.url).toMatch(/\/upstream-signup$/);
    expect(page.body).toContain('did not confirm this address');
    const t = await tokens(client, req, await confirmSignup(browser, page));
    expect(t.claims()?.sub).not.toBe(account.id);
    expect(t.claims()?.email).toBeUndefined();
    const created = await server.services.accounts.findAccountById(t.claims()?.sub as string);
    expect(created?.emails).toEqual([]);
  });

  it('matches a Google Workspace address (hd present) and offers linking', async () => {
    const email = uniqueEmail('workspace');
    await emailAccount(email);
    google.nextUser({ sub: uniqueSub(), email, email_verified: 'true', hd: 'example.test' });
    const { page } = await startUpstream(new Browser(), 'google');
    expect(page.url).toMatch(/\/link$/);
  });

  it('never registers an Apple relay address, and asks for a real email when the client requires one', async () => {
    const appleSub = `001234.${uniqueSub()}.0999`;
    const relay = `${uniqueSub()}@privaterelay.appleid.com`;
    apple.nextUser({ sub: appleSub, email: relay, email_verified: 'true', is_private_email: 'true', name: 'Ren Kato' });
    const browser = new Browser();
    const { req, page } = await startUpstream(browser, 'apple', needsEmail);
    expect(page.url).toMatch(/\/upstream-signup$/);
    expect(page.body).toContain('Hide My Email');
    expect(page.body).toContain('Ren Kato'); // Apple's `user` JSON of the first authorization
    let next = await confirmSignup(browser, page);
    expect(next.url).toMatch(/\/require-email$/);
    const mine = uniqueEmail('apple-real');
    next = await browser.follow(at(next, '/require-email'), { form: { _csrf: csrfOf(next.body), email: mine } });
    expect(next.body).toContain('autocomplete="one-time-code"');
    next = await browser.follow(at(next, '/require-email/code'), { form: { _csrf: csrfOf(next.body), code: codeFrom(await sink.nextMailTo(mine)) } }, isCallback);
    const t = await tokens(needsEmail, req, next);
    expect(t.claims()).toMatchObject({ email: mine, email_verified: true, name: 'Ren Kato' });
    const identity = await identityOf(apple.issuer, appleSub);
    expect(identity).toMatchObject({ isPrivateEmail: true, email: relay, hasRefreshToken: true });
    const account = await server.services.accounts.findAccountById(identity?.accountId as string);
    expect(account?.emails.map((e) => e.address)).toEqual([mine]);
  });

  it('refuses a required email that belongs to another account, and links nothing to it', async () => {
    const taken = uniqueEmail('taken');
    const { account: other } = await emailAccount(taken);
    apple.nextUser({ sub: `001.${uniqueSub()}`, email: `${uniqueSub()}@privaterelay.appleid.com`, email_verified: true, is_private_email: true });
    const browser = new Browser();
    const { page } = await startUpstream(browser, 'apple', needsEmail);
    const ask = await confirmSignup(browser, page);
    const refused = await browser.follow(at(ask, '/require-email'), { form: { _csrf: csrfOf(ask.body), email: taken } });
    expect(refused.res.status).toBe(409);
    expect(refused.body).toContain('belongs to another Tsunagi account');
    expect((await server.services.identities.listForAccount(other.id))).toEqual([]);
  });

  it('links Apple to an account through its linked Google identity, sent with login_hint, and refuses another Google account', async () => {
    const email = `both${uniqueSub()}@gmail.com`;
    const googleSub = uniqueSub();
    google.nextUser({ sub: googleSub, email, email_verified: true });
    const g = new Browser();
    const first = await startUpstream(g, 'google');
    const owner = await tokens(client, first.req, await confirmSignup(g, first.page));

    // Apple with the same (non-relay, verified) email: the link page offers Google.
    const appleSub = `001.${uniqueSub()}`;
    apple.nextUser({ sub: appleSub, email, email_verified: 'true', is_private_email: 'false' });
    const browser = new Browser();
    const { req, page } = await startUpstream(browser, 'apple');
    expect(page.url).toMatch(/\/link$/);
    expect(page.body).toContain('/link/upstream/google');

    // Someone else's Google account: refused, nothing linked.
    google.nextUser({ sub: uniqueSub(), email: `other${uniqueSub()}@gmail.com`, email_verified: true });
    const wrong = await browser.follow(at(page, '/link/upstream/google'), { form: { _csrf: csrfOf(page.body) } }, isCallback);
    expect(wrong.res.status).toBe(400);
    expect(wrong.body).toContain('not the Google account linked');
    expect(await identityOf(apple.issuer, appleSub)).toBeUndefined();
    expect(google.authorizeRequests.at(-1)?.query.login_hint).toBe(googleSub);

    // The linked one (picked by login_hint, as Google does): linked and signed in.
    google.addUser({ sub: googleSub, email, email_verified: true });
    const linkPage = await browser.follow(`${new URL(page.url).origin}${new URL(page.url).pathname}`);
    const done = await browser.follow(at(linkPage, '/link/upstream/google'), { form: { _csrf: csrfOf(linkPage.body) } }, isCallback);
    const t = await tokens(client, req, done);
    expect(t.claims()?.sub).toBe(owner.claims()?.sub);
    expect((await identityOf(apple.issuer, appleSub))?.accountId).toBe(owner.claims()?.sub);
  });

  it('turns upstream failures into a readable page and changes nothing', async () => {
    const tried: Array<{ sub: string; email: string }> = [];
    const nextUser = () => {
      const user = { sub: uniqueSub(), email: `t${uniqueSub()}@gmail.com` };
      tried.push(user);
      google.nextUser({ ...user, email_verified: true });
    };
    // The person cancels at Google.
    google.failNextAuthorize.push('access_denied');
    let r = await startUpstream(new Browser(), 'google');
    expect(r.page.res.status).toBe(400);
    expect(r.page.body).toContain('cancelled at Google');
    expect(r.page.body).toContain('/interaction/');

    // An ID token for another audience, then one with a bad signature, then alg none.
    for (const tamper of [{ aud: 'someone-else' }, { badSignature: true }, { algNone: true }, { nonce: 'not-the-nonce' }, { shiftSeconds: -7200 }]) {
      nextUser();
      google.tamperNextIdToken.push(tamper);
      r = await startUpstream(new Browser(), 'google');
      expect(r.page.res.status).toBe(400);
      expect(r.page.body).toContain('could not be verified');
    }

    // Google down: a 503 from the token endpoint.
    nextUser();
    google.failNextToken.push({ status: 503 });
    r = await startUpstream(new Browser(), 'google');
    expect(r.page.res.status).toBe(502);
    expect(r.page.body).toContain('could not be reached');
    for (const user of tried) {
      expect(await identityOf(google.issuer, user.sub)).toBeUndefined();
      expect(await accountByEmail(user.email)).toBeUndefined();
    }
  });

  it('refuses a replayed callback, and a callback carried to another browser (login CSRF) changes nothing', async () => {
    const sub = uniqueSub();
    google.nextUser({ sub, email: `r${sub}@gmail.com`, email_verified: true });
    const attacker = new Browser();
    const req = await authorizationRequest(client, REDIRECT, { scope: 'openid email' });
    const login = await attacker.follow(req.url.href);
    const toGoogle = await attacker.request(at(login, '/upstream/google'), { form: { _csrf: csrfOf(login.body) } });
    const answer = await attacker.request(toGoogle.res.headers.get('location') as string);
    const callbackUrl = answer.res.headers.get('location') as string;
    expect(callbackUrl).toContain('/upstream/google/callback?');

    // The victim's browser opens the attacker's callback: refused there, the attacker's identity is not
    // parked for anyone, and the victim sees why.
    const victim = new Browser();
    const landed = await victim.follow(callbackUrl);
    expect(landed.res.status).toBe(400);
    expect(landed.body).toContain('started in another browser');
    expect(landed.body).not.toContain('/upstream-signup"');
    expect(await identityOf(google.issuer, sub)).toBeUndefined();

    // The browser that began it still can finish (it is its own identity), once; the same callback again is a replay.
    const own = await attacker.follow(callbackUrl);
    expect(own.url).toMatch(/\/upstream-signup$/);
    const replay = await attacker.follow(callbackUrl);
    expect(replay.res.status).toBe(400);
    expect(replay.body).toContain('already used');
  });

  describe('an authorization URL forwarded to another browser (RFC 9700 §4.7.1)', () => {
    /** The interaction uid of a login page's URL. */
    const uidOf = (page: Page) => /\/interaction\/([^/?]+)/.exec(page.url)?.[1] as string;
    /** What the interaction has parked from an upstream answer (nothing, after a forwarded URL). */
    const parkedFor = async (uid: string) => {
      const now = new Date();
      const kinds = ['upstream_return', 'upstream_signup', 'upstream_link'] as const;
      return (await Promise.all(kinds.map((k) => server.services.proofs.peek(uid, k, now)))).filter(Boolean);
    };
    /** The attacker's browser asks for the upstream URL of its own interaction and does not follow it. */
    async function attackerUpstreamUrl(provider: 'google' | 'apple') {
      const attacker = new Browser();
      const req = await authorizationRequest(client, REDIRECT, { scope: 'openid email profile' });
      const login = await attacker.follow(req.url.href);
      const toProvider = await attacker.request(at(login, `/upstream/${provider}`), { form: { _csrf: csrfOf(login.body) } });
      expect(toProvider.res.status).toBe(303);
      return { attacker, req, uid: uidOf(login), providerUrl: toProvider.res.headers.get('location') as string };
    }
    /** The attacker's browser then asks its interaction for the parked answer: it must get nothing. */
    async function attackerContinues(attacker: Browser, uid: string) {
      const page = await attacker.follow(`${issuer}/interaction/${uid}/upstream/continue`, {}, isCallback);
      expect(isCallback(page.url)).toBe(false);
      return page;
    }
    /** An account that signs in with this Google or Apple identity (signed up with it, in its own browser). */
    async function victimWith(provider: 'google' | 'apple', user: { sub: string; email: string }) {
      (provider === 'google' ? google : apple).nextUser({ ...user, email_verified: 'true', is_private_email: 'false' });
      const own = new Browser();
      const first = await startUpstream(own, provider);
      const t = await tokens(client, first.req, await confirmSignup(own, first.page));
      return t.claims()?.sub as string;
    }

    it('Google login: the victim\'s identity is not parked, the attacker\'s interaction gets nothing, the browser that began it can still finish', async () => {
      const victimSub = uniqueSub();
      const victimAccount = await victimWith('google', { sub: victimSub, email: `victim${victimSub}@gmail.com` });
      const { attacker, req, uid, providerUrl } = await attackerUpstreamUrl('google');

      // The victim opens the forwarded Google URL; Google (signed in) sends their browser straight back.
      google.nextUser({ sub: victimSub, email: `victim${victimSub}@gmail.com`, email_verified: true });
      const victim = new Browser();
      const landed = await victim.follow(providerUrl);
      // What the attack is after first: the attacker's interaction has nothing to pick up.
      expect((await attackerContinues(attacker, uid)).body).toContain('name="email" type="email"');
      expect(await parkedFor(uid)).toEqual([]);
      expect(landed.res.status).toBe(400);
      expect(landed.body).toContain('This sign-in was started in another browser. Start again here');
      expect(landed.body).not.toContain(uid); // no way into the attacker's interaction

      // The attempt was not used up: the browser that began it finishes with its own Google account.
      const ownSub = uniqueSub();
      google.nextUser({ sub: ownSub, email: `own${ownSub}@gmail.com`, email_verified: true });
      const own = await attacker.follow(providerUrl, {}, isCallback);
      const t = await tokens(client, req, await confirmSignup(attacker, own));
      expect(t.claims()?.sub).not.toBe(victimAccount);
      expect((await identityOf(google.issuer, ownSub))?.accountId).toBe(t.claims()?.sub);
      expect((await identityOf(google.issuer, victimSub))?.accountId).toBe(victimAccount);
    });

    it('Apple login (cross-site form_post): the victim\'s identity is not parked, the attacker gets nothing, the browser that began it can still finish', async () => {
      const victimSub = `001.${uniqueSub()}`;
      const victimAccount = await victimWith('apple', { sub: victimSub, email: `${uniqueSub()}@privaterelay.appleid.com` });
      const { attacker, req, uid, providerUrl } = await attackerUpstreamUrl('apple');

      apple.nextUser({ sub: victimSub, email_verified: 'true' });
      const victim = new Browser();
      const form = await victim.follow(providerUrl);
      // The POST decides nothing: it sends the victim's browser on to a same-site GET, refused there.
      const posted = await victim.request(/<form method="post" action="([^"]+)"/.exec(form.body)?.[1]?.replace(/&amp;/g, '&') as string, {
        form: Object.fromEntries([...form.body.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [m[1] as string, (m[2] as string).replace(/&quot;/g, '"').replace(/&amp;/g, '&')])),
        crossSitePost: true,
      });
      const hop = new URL(posted.res.headers.get('location') as string, issuer).href;
      const landed = await victim.follow(hop);
      await attackerContinues(attacker, uid);
      expect(await parkedFor(uid)).toEqual([]);
      expect(posted.res.status).toBe(303);
      expect(hop).toMatch(/\/upstream\/apple\/answer\?ref=[\w-]{43}$/);
      expect(landed.res.status).toBe(400);
      expect(landed.body).toContain('This sign-in was started in another browser. Start again here');
      // The held answer was taken once: the reference is worth nothing afterwards, even with the right cookie.
      const again = await attacker.follow(hop);
      expect(again.res.status).toBe(400);
      expect(again.body).toContain('does not belong to a sign-in we started');
      expect(await parkedFor(uid)).toEqual([]);

      const ownSub = `001.${uniqueSub()}`;
      apple.nextUser({ sub: ownSub, email: `${uniqueSub()}@privaterelay.appleid.com`, email_verified: 'true', is_private_email: 'true' });
      const own = await postApple(attacker, await attacker.follow(providerUrl));
      const t = await tokens(client, req, await confirmSignup(attacker, own));
      expect(t.claims()?.sub).not.toBe(victimAccount);
      expect((await identityOf(apple.issuer, ownSub))?.accountId).toBe(t.claims()?.sub);
    });

    it('link proof through the other provider: the forwarded Google URL links nothing, and the browser that began it can still prove it', async () => {
      // The victim's account: Google, with a vouched email.
      const googleSub = uniqueSub();
      const email = `proof${googleSub}@gmail.com`;
      const victimAccount = await victimWith('google', { sub: googleSub, email });
      google.addUser({ sub: googleSub, email, email_verified: true });

      // Someone signs in with an Apple identity carrying that email: offered to link, they choose
      // "prove with Google" and send that Google URL (login_hint = the victim's Google) to the victim.
      const appleSub = `001.${uniqueSub()}`;
      apple.nextUser({ sub: appleSub, email, email_verified: 'true', is_private_email: 'false' });
      const attacker = new Browser();
      const { req, page } = await startUpstream(attacker, 'apple');
      expect(page.url).toMatch(/\/link$/);
      const uid = uidOf(page);
      const toGoogle = await attacker.request(at(page, '/link/upstream/google'), { form: { _csrf: csrfOf(page.body) } });
      const googleUrl = toGoogle.res.headers.get('location') as string;
      expect(new URL(googleUrl).searchParams.get('login_hint')).toBe(googleSub);

      const landed = await new Browser().follow(googleUrl);
      expect(await server.services.proofs.peek(uid, 'upstream_return', new Date())).toBeUndefined();
      await attackerContinues(attacker, uid);
      expect(await identityOf(apple.issuer, appleSub)).toBeUndefined();
      expect(landed.res.status).toBe(400);
      expect(landed.body).toContain('started in another browser');

      // The browser that began the proof (here: the owner's, Google picks the linked account) still can.
      const done = await attacker.follow(googleUrl, {}, isCallback);
      const t = await tokens(client, req, done);
      expect(t.claims()?.sub).toBe(victimAccount);
      expect((await identityOf(apple.issuer, appleSub))?.accountId).toBe(victimAccount);
    });

    it('account-page link: the victim\'s Apple is not linked to the attacker\'s account, and the account page that began it can still link', async () => {
      const attackerSub = uniqueSub();
      google.nextUser({ sub: attackerSub, email: `a${attackerSub}@example.test`, email_verified: true });
      const attacker = new Browser();
      const first = await startUpstream(attacker, 'google');
      const attackerAccount = (await tokens(client, first.req, await confirmSignup(attacker, first.page))).claims()?.sub as string;
      const account = await attacker.follow(`${issuer}/account`);
      const toApple = await attacker.request(at(account, '/providers/apple/link'), { form: { _csrf: csrfOf(account.body) } });
      const appleUrl = toApple.res.headers.get('location') as string;
      expect(appleUrl.startsWith(apple.issuer)).toBe(true);

      const victimSub = `001.${uniqueSub()}`;
      apple.nextUser({ sub: victimSub, email: `${uniqueSub()}@privaterelay.appleid.com`, email_verified: 'true', is_private_email: 'true' });
      const victim = new Browser();
      const landed = await postApple(victim, await victim.follow(appleUrl));
      const picked = await attacker.follow(`${issuer}/account/providers/continue`);
      expect(picked.url).not.toContain('notice=upstream_linked');
      expect(await identityOf(apple.issuer, victimSub)).toBeUndefined();
      expect(await server.services.identities.listForAccount(attackerAccount)).toHaveLength(1);
      expect(landed.res.status).toBe(400);
      expect(landed.body).toContain('This link was started in another browser. Start again here');
      expect(landed.body).toContain('href="/account"');

      const ownSub = `001.${uniqueSub()}`;
      apple.nextUser({ sub: ownSub, email: `${uniqueSub()}@privaterelay.appleid.com`, email_verified: 'true', is_private_email: 'true' });
      const back = await postApple(attacker, await attacker.follow(appleUrl));
      expect(back.url).toContain('notice=upstream_linked');
      expect((await identityOf(apple.issuer, ownSub))?.accountId).toBe(attackerAccount);
    });

    it('the binding cookie is per attempt, short-lived with its pending login, single use, and its absence gives the readable page', async () => {
      const browser = new Browser();
      const req = await authorizationRequest(client, REDIRECT, { scope: 'openid email' });
      const login = await browser.follow(req.url.href);
      const toGoogle = await browser.request(at(login, '/upstream/google'), { form: { _csrf: csrfOf(login.body) } });
      const setCookie = toGoogle.res.headers.getSetCookie().find((c) => c.startsWith('tsunagi.upstream.')) as string;
      expect(setCookie).toMatch(/^tsunagi\.upstream\.[\w-]{16}=[\w-]{43}; /);
      // It expires with the pending login (UPSTREAM_LOGIN_TTL_SECONDS), counted from the response's own Date.
      const expires = Date.parse(/expires=([^;]+)/i.exec(setCookie)?.[1] as string);
      const sentAt = Date.parse(toGoogle.res.headers.get('date') as string);
      expect(Math.abs((expires - sentAt) / 1000 - 600)).toBeLessThanOrEqual(1);
      expect(setCookie).toMatch(/path=\/upstream\//i);
      expect(setCookie).toMatch(/samesite=lax/i);
      expect(setCookie).toMatch(/httponly/i);
      const cookieName = setCookie.slice(0, setCookie.indexOf('='));
      const value = browser.jar.get(cookieName) as string;
      const googleUrl = toGoogle.res.headers.get('location') as string;

      // A second attempt in the same browser has its own cookie; the first one's value does not open it.
      const req2 = await authorizationRequest(client, REDIRECT, { scope: 'openid email' });
      const login2 = await browser.follow(req2.url.href);
      const toGoogle2 = await browser.request(at(login2, '/upstream/google'), { form: { _csrf: csrfOf(login2.body) } });
      const cookie2 = toGoogle2.res.headers.getSetCookie().find((c) => c.startsWith('tsunagi.upstream.')) as string;
      const name2 = cookie2.slice(0, cookie2.indexOf('='));
      expect(name2).not.toBe(cookieName);
      const sub2 = uniqueSub();
      google.nextUser({ sub: sub2, email: `b${sub2}@gmail.com`, email_verified: true });
      const callback2 = (await browser.request(toGoogle2.res.headers.get('location') as string)).res.headers.get('location') as string;
      const swapped = new Browser();
      swapped.jar.put(name2, value);
      const refusedSwap = await swapped.follow(callback2);
      expect(refusedSwap.res.status).toBe(400);
      expect(refusedSwap.body).toContain('started in another browser');

      // No cookie at all (cleared, blocked, or another browser): the readable page, not a 500, and nothing used up.
      const sub = uniqueSub();
      google.nextUser({ sub, email: `c${sub}@gmail.com`, email_verified: true });
      const callbackUrl = (await browser.request(googleUrl)).res.headers.get('location') as string;
      browser.jar.put(cookieName, undefined);
      const missing = await browser.follow(callbackUrl);
      expect(missing.res.status).toBe(400);
      expect(missing.body).toContain('This sign-in was started in another browser');
      expect(await identityOf(google.issuer, sub)).toBeUndefined();

      // With the cookie back, that same answer completes; the cookie is cleared, and is single use.
      browser.jar.put(cookieName, value);
      const done = await browser.follow(callbackUrl, {}, isCallback);
      expect(done.url).toMatch(/\/upstream-signup$/);
      expect(browser.jar.names()).not.toContain(cookieName);
      browser.jar.put(cookieName, value);
      const replay = await browser.follow(callbackUrl);
      expect(replay.res.status).toBe(400);
      expect(replay.body).toContain('already used');
    });
  });

  it('links and unlinks Apple from the account page, revoking Apple\'s token, and keeps the last method', async () => {
    // An account that only has Google.
    const gsub = uniqueSub();
    google.nextUser({ sub: gsub, email: `only${gsub}@example.test`, email_verified: true }); // not vouched: no email registered
    const browser = new Browser();
    const first = await startUpstream(browser, 'google');
    const t = await tokens(client, first.req, await confirmSignup(browser, first.page));
    const accountId = t.claims()?.sub as string;

    // The account page, signed in through the same Tsunagi session.
    let account = await browser.follow(`${issuer}/account`);
    expect(account.url).toBe(`${issuer}/account`);
    expect(account.body).toContain('Link Apple');
    const googleIdentity = await identityOf(google.issuer, gsub);
    expect(account.body).toMatch(new RegExp(`/account/providers/${googleIdentity?.id}/unlink"[^>]*><input[^>]*><button[^>]*disabled`));

    // Unlinking the only method is refused.
    const refused = await browser.follow(`${issuer}/account/providers/${googleIdentity?.id}/unlink`, { form: { _csrf: csrfOf(account.body) } });
    expect(refused.url).toContain('notice=last_method');
    expect(await identityOf(google.issuer, gsub)).toBeDefined();

    // Link Apple from the account page.
    const appleSub = `001.${uniqueSub()}`;
    apple.nextUser({ sub: appleSub, email: `${uniqueSub()}@privaterelay.appleid.com`, email_verified: true, is_private_email: true });
    account = await browser.follow(`${issuer}/account`);
    const toApple = await browser.follow(at(account, '/providers/apple/link'), { form: { _csrf: csrfOf(account.body) } });
    const back = await postApple(browser, toApple);
    expect(back.url).toContain('notice=upstream_linked');
    expect((await identityOf(apple.issuer, appleSub))?.accountId).toBe(accountId);
    expect(await server.services.accounts.countSignInMethods(accountId)).toBe(2);

    // Unlink Apple: Apple is asked to revoke the stored refresh token.
    const appleIdentity = await identityOf(apple.issuer, appleSub);
    account = await browser.follow(`${issuer}/account`);
    const revokedBefore = apple.revokedTokens.length;
    const unlinked = await browser.follow(`${issuer}/account/providers/${appleIdentity?.id}/unlink`, { form: { _csrf: csrfOf(account.body) } });
    expect(unlinked.url).toContain('notice=upstream_unlinked');
    expect(await identityOf(apple.issuer, appleSub)).toBeUndefined();
    expect(apple.revokedTokens.length).toBe(revokedBefore + 1);
  });
});
