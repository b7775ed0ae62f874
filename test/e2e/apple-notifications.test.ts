import * as oidc from 'openid-client';
import { jest } from '@jest/globals';
import type { AuditEventType } from '../../src/accounts/account-store.js';
import type { RunningServer } from '../../src/server.js';
import { FakeApple, type AppleNotificationEventClaims } from '../fakes/apple.js';
import type { IdTokenTamper } from '../fakes/upstream-emulator.js';
import { Browser, csrfOf, formAction } from '../support/browserless.js';
import { describeBackends, startTestServer, uniqueEmail } from '../support/harness.js';
import { authorizationRequest, discover, stillSignedIn as isStillSignedIn } from './support.js';

const REDIRECT = 'http://127.0.0.1:9/cb';
type Page = { res: Response; body: string; url: string };
const isCallback = (u: string) => u.startsWith(REDIRECT);
const uniqueSub = () => `001${Date.now()}.${Math.floor(Math.random() * 1e9)}.0042`;

// Apple's server-to-server notifications at POST /upstream/apple/notifications, signed by the Apple
// emulator's real JWKS key, against identities made by real Sign in with Apple flows.
describe(`Apple server-to-server notifications (${describeBackends()})`, () => {
  let server: RunningServer;
  let apple: FakeApple;
  let issuer: string;
  let client: oidc.Configuration;

  beforeAll(async () => {
    apple = await new FakeApple().start();
    server = await startTestServer({ ...apple.env() });
    issuer = server.services.config.issuer;
    const added = await server.services.clients.add({
      client_name: 'Shop', redirect_uris: [REDIRECT], first_party: true, grant_types: ['authorization_code', 'refresh_token'],
    });
    client = await discover(server, added.client_id as string, added.client_secret as string);
  });

  afterAll(async () => {
    await server?.close();
    await apple?.close();
  });

  const at = (page: Page, contains: string) => new URL(formAction(page.body, contains), issuer).href;

  async function postApple(browser: Browser, page: Page): Promise<Page> {
    const action = /<form method="post" action="([^"]+)"/.exec(page.body)?.[1]?.replace(/&amp;/g, '&');
    if (!action) return page;
    const form = Object.fromEntries([...page.body.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)]
      .map((m) => [m[1] as string, (m[2] as string).replace(/&quot;/g, '"').replace(/&amp;/g, '&')]));
    return browser.follow(action, { form, crossSitePost: true }, isCallback);
  }

  /** A new account made by signing up with Apple (confirmation screen, passkey offer skipped), with its tokens. */
  async function appleAccount(user: { email: string; relay: boolean }) {
    const sub = uniqueSub();
    apple.nextUser({ sub, email: user.email, email_verified: 'true', is_private_email: user.relay ? 'true' : 'false' });
    const browser = new Browser();
    const req = await authorizationRequest(client, REDIRECT, { scope: 'openid email offline_access', prompt: 'consent' });
    const login = await browser.follow(req.url.href);
    let page = await postApple(browser, await browser.follow(at(login, '/upstream/apple'), { form: { _csrf: csrfOf(login.body) } }, isCallback));
    expect(page.url).toMatch(/\/upstream-signup$/);
    page = await browser.follow(at(page, '/upstream-signup'), { form: { _csrf: csrfOf(page.body) } }, isCallback);
    if (page.body.includes('/passkey/register/options')) {
      const skip = /<a class="button secondary" href="([^"]+)"/.exec(page.body)?.[1] as string;
      page = await browser.follow(new URL(skip.replace(/&amp;/g, '&'), issuer).href, {}, isCallback);
    }
    for (let i = 0; i < 3 && !isCallback(page.url) && page.body.includes('/consent"'); i++) {
      page = await browser.follow(at(page, '/consent'), { form: { _csrf: csrfOf(page.body) } }, isCallback);
    }
    if (!isCallback(page.url)) throw new Error(`not back at the client: ${page.res.status} ${page.url}: ${page.body.slice(0, 300)}`);
    const tokens = await oidc.authorizationCodeGrant(client, new URL(page.url), { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    const identity = await server.services.identities.findByIssuerSubject(apple.issuer, sub);
    if (!identity) throw new Error('the Apple identity was not linked');
    return { sub, browser, tokens, identity, accountId: identity.accountId };
  }

  async function notify(jws: unknown): Promise<number> {
    const res = await fetch(`${issuer}/upstream/apple/notifications`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ payload: jws }),
    });
    expect(await res.text()).toBe(''); // never a detail, whatever happened
    return res.status;
  }
  const send = async (events: AppleNotificationEventClaims, tamper?: IdTokenTamper) => notify(await apple.signNotification(events, tamper));
  const identityOf = (sub: string) => server.services.identities.findByIssuerSubject(apple.issuer, sub);
  const audit = (accountId: string, type?: string) => server.services.accounts.listAuditEvents({ accountId, ...(type ? { type } : {}) });
  const userinfoWorks = async (accessToken: string, sub: string) => oidc.fetchUserInfo(client, accessToken, sub).then(() => true, () => false);

  const stillSignedIn = (browser: Browser) => isStillSignedIn(browser, client, REDIRECT);

  it('marks a relay address undeliverable on email-disabled and deliverable again on email-enabled, audited', async () => {
    const relay = `${Date.now()}x@privaterelay.appleid.com`;
    const { sub, accountId } = await appleAccount({ email: relay, relay: true });
    expect((await identityOf(sub))?.emailDeliverable).toBe(true);

    expect(await send({ type: 'email-disabled', sub, email: relay, is_private_email: 'true' })).toBe(200);
    expect(await identityOf(sub)).toMatchObject({ emailDeliverable: false, email: relay, accountId });
    expect(await send({ type: 'email-enabled', sub, email: relay, is_private_email: 'true', event_time: Date.now() + 1 })).toBe(200);
    expect((await identityOf(sub))?.emailDeliverable).toBe(true);

    expect((await audit(accountId, 'upstream_email_disabled')).map((e) => e.data)).toEqual([expect.objectContaining({ provider: 'apple', by: 'apple_notification' })]);
    expect(await audit(accountId, 'upstream_email_enabled')).toHaveLength(1);
  });

  it('shows Apple\'s email and ignored notifications among the account page\'s security events, in English and Japanese', async () => {
    const relay = `${Date.now()}a@privaterelay.appleid.com`;
    const { sub, accountId, browser } = await appleAccount({ email: relay, relay: true });
    expect(await send({ type: 'email-disabled', sub, email: relay, is_private_email: 'true' })).toBe(200);
    expect(await send({ type: 'email-enabled', sub, email: relay, is_private_email: 'true', event_time: Date.now() + 1 })).toBe(200);
    // A revocation from before this sign-in is ignored, and audited as such.
    expect(await send({ type: 'consent-revoked', sub, event_time: Date.now() - 3_600_000 })).toBe(200);
    expect(await audit(accountId, 'upstream_notification_ignored')).toHaveLength(1);

    const english = await browser.follow(`${issuer}/account?lang=en`);
    expect(english.res.status).toBe(200);
    expect(english.body).toContain('Apple stopped forwarding mail from your private relay address');
    expect(english.body).toContain('Apple resumed forwarding mail from your private relay address');
    expect(english.body).toContain('A notice from a sign-in provider was received (nothing to change)');
    const japanese = await browser.follow(`${issuer}/account?lang=ja`);
    expect(japanese.res.status).toBe(200);
    expect(japanese.body).toContain('Apple が「メールを非公開」のアドレスへのメール転送を停止');
    expect(japanese.body).toContain('Apple が「メールを非公開」のアドレスへのメール転送を再開');
    expect(japanese.body).toContain('ログイン方法の提供元から通知を受信（変更なし）');
  });

  it('still shows the account page when an event has a type this version has no text for, with a neutral label and a warning', async () => {
    const { accountId, browser } = await appleAccount({ email: `${Date.now()}n@privaterelay.appleid.com`, relay: true });
    // As a newer version of Tsunagi sharing the database might write.
    await server.services.accounts.recordAuditEvent({ type: 'written_by_a_newer_version' as AuditEventType, accountId });
    const warn = jest.spyOn(server.services.log, 'warn');
    try {
      for (const [lang, label] of [['en', 'Other security event'], ['ja', 'その他のセキュリティイベント']]) {
        const page = await browser.follow(`${issuer}/account?lang=${lang}`);
        expect(page.res.status).toBe(200);
        expect(page.body).toContain(label);
      }
      expect(warn).toHaveBeenCalledWith({ type: 'written_by_a_newer_version' }, expect.stringContaining('without a message'));
    } finally {
      warn.mockRestore();
    }
  });

  it('handles a duplicate (the same JWS again, or the same event signed again) once: 200, no second change', async () => {
    const relay = `${Date.now()}d@privaterelay.appleid.com`;
    const { sub, accountId } = await appleAccount({ email: relay, relay: true });
    const event = { type: 'email-disabled', sub, email: relay, is_private_email: 'true', event_time: Date.now() } as const;
    const jws = await apple.signNotification(event);
    expect(await notify(jws)).toBe(200);
    // Re-enable by hand: a duplicate that were applied again would disable it once more.
    await server.services.identities.setEmailDeliverable(apple.issuer, sub, true);
    expect(await notify(jws)).toBe(200);
    expect(await send(event)).toBe(200); // same event, new jti and signature
    const both = await Promise.all([notify(jws), notify(jws)]);
    expect(both).toEqual([200, 200]);
    expect((await identityOf(sub))?.emailDeliverable).toBe(true);
    expect(await audit(accountId, 'upstream_email_disabled')).toHaveLength(1);
  });

  it('refuses a bad signature, another audience or issuer, alg none, an old or future iat, and garbage, with 400 and no change', async () => {
    const relay = `${Date.now()}b@privaterelay.appleid.com`;
    const { sub, accountId } = await appleAccount({ email: relay, relay: true });
    const disable = { type: 'email-disabled', sub, email: relay, is_private_email: 'true' } as const;
    const tampers: IdTokenTamper[] = [
      { badSignature: true }, { aud: 'com.example.someone-else' }, { iss: 'https://appleid.apple.example' }, { algNone: true },
      { unknownKid: true }, { shiftSeconds: -5 * 24 * 3600 }, { shiftSeconds: 3600 }, { hmacWithSecret: 'x'.repeat(32) },
    ];
    for (const tamper of tampers) expect([JSON.stringify(tamper), await send(disable, tamper)]).toEqual([JSON.stringify(tamper), 400]);
    expect(await notify('not.a.jwt')).toBe(400);
    expect(await notify(undefined)).toBe(400);
    expect(await notify(12)).toBe(400);
    // Signed correctly, but the events claim is not an event.
    expect(await notify(await apple.signIdToken({ iss: apple.issuer, aud: apple.clientId, events: '{"type":"email-disabled"}' }))).toBe(400);
    expect(await notify(await apple.signIdToken({ iss: apple.issuer, aud: apple.clientId, events: 'not json' }))).toBe(400);
    const raw = await fetch(`${issuer}/upstream/apple/notifications`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"payload":' });
    expect(raw.status).toBe(400);

    expect((await identityOf(sub))?.emailDeliverable).toBe(true);
    expect(await audit(accountId, 'upstream_email_disabled')).toEqual([]);
    // The refusals left no record behind: the genuine notification is still applied.
    expect(await send(disable)).toBe(200);
    expect((await identityOf(sub))?.emailDeliverable).toBe(false);
  });

  it('acknowledges an unknown subject or event type with 200 and changes nothing', async () => {
    const unknown = uniqueSub();
    expect(await send({ type: 'account-delete', sub: unknown })).toBe(200);
    expect(await identityOf(unknown)).toBeUndefined();
    const { sub, accountId } = await appleAccount({ email: `${Date.now()}u@privaterelay.appleid.com`, relay: true });
    expect(await send({ type: 'something-new', sub })).toBe(200);
    expect((await identityOf(sub))?.accountId).toBe(accountId);
    expect(await server.services.accounts.findAccountById(accountId)).toBeDefined();
    // (Counting all accounts would not do: other test files share the database.)
  });

  it('on consent-revoked unlinks Apple, keeps the account with its other method, and ends its sessions and tokens', async () => {
    const email = uniqueEmail('apple-real');
    const { sub, accountId, tokens, browser } = await appleAccount({ email, relay: false });
    const account = await server.services.accounts.findAccountById(accountId);
    expect(account?.emails.map((e) => e.address)).toEqual([email]);
    expect(await userinfoWorks(tokens.access_token, accountId)).toBe(true);
    expect(await stillSignedIn(browser)).toBe(true);

    expect(await send({ type: 'consent-revoked', sub })).toBe(200);
    expect(await identityOf(sub)).toBeUndefined();
    expect(await server.services.accounts.findAccountById(accountId)).toBeDefined();
    expect(await server.services.accounts.countSignInMethods(accountId)).toBe(1);
    expect(await userinfoWorks(tokens.access_token, accountId)).toBe(false);
    expect(await stillSignedIn(browser)).toBe(false);
    expect((await audit(accountId, 'upstream_unlinked'))[0]?.data).toMatchObject({ provider: 'apple', event: 'consent-revoked', lastMethod: false });
  });

  it('on account-delete of the last sign-in method keeps the account, unlinks, and stops its tokens and sessions', async () => {
    const { sub, accountId, tokens, browser } = await appleAccount({ email: `${Date.now()}z@privaterelay.appleid.com`, relay: true });
    expect(tokens.refresh_token).toBeTruthy();
    expect(await server.services.accounts.countSignInMethods(accountId)).toBe(1);
    expect(await userinfoWorks(tokens.access_token, accountId)).toBe(true);
    expect(await stillSignedIn(browser)).toBe(true);

    expect(await send({ type: 'account-delete', sub })).toBe(200);
    expect(await identityOf(sub)).toBeUndefined();
    expect(await server.services.accounts.findAccountById(accountId)).toBeDefined(); // never deleted silently
    expect(await server.services.accounts.countSignInMethods(accountId)).toBe(0);
    expect(await userinfoWorks(tokens.access_token, accountId)).toBe(false);
    await expect(oidc.refreshTokenGrant(client, tokens.refresh_token as string)).rejects.toMatchObject({ error: 'invalid_grant' });
    expect(await stillSignedIn(browser)).toBe(false);
    expect((await audit(accountId, 'upstream_unlinked'))[0]?.data).toMatchObject({ provider: 'apple', event: 'account-delete', lastMethod: true });

    // Signing in with that Apple ID again is a new signup, not the kept account.
    apple.nextUser({ sub, email: `${Date.now()}y@privaterelay.appleid.com`, email_verified: 'true', is_private_email: 'true' });
    const again = new Browser();
    const req = await authorizationRequest(client, REDIRECT, { scope: 'openid' });
    const login = await again.follow(req.url.href);
    const page = await postApple(again, await again.follow(at(login, '/upstream/apple'), { form: { _csrf: csrfOf(login.body) } }, isCallback));
    expect(page.url).toMatch(/\/upstream-signup$/);
  });

  it('ignores a revocation older than the latest Apple sign-in (consent given again since)', async () => {
    const { sub, accountId, tokens } = await appleAccount({ email: `${Date.now()}s@privaterelay.appleid.com`, relay: true });
    // event_time in seconds, as some deliveries carry it: an hour before this sign-in.
    expect(await send({ type: 'consent-revoked', sub, event_time: Math.floor(Date.now() / 1000) - 3600 })).toBe(200);
    expect((await identityOf(sub))?.accountId).toBe(accountId);
    expect(await userinfoWorks(tokens.access_token, accountId)).toBe(true);
    expect(await audit(accountId, 'upstream_unlinked')).toEqual([]);
  });
});
