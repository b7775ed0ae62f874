import type { Browser, BrowserContext, Page } from 'playwright-core';
import * as oidc from 'openid-client';
import type { RunningServer } from '../../src/server.js';
import type { PersonalDataExport } from '../../src/flows/account-lifecycle.js';
import { FakeApple } from '../fakes/apple.js';
import { SmtpSink, codeFrom } from '../fakes/smtp-sink.js';
import { describeBackends, startTestServer, uniqueEmail } from '../support/harness.js';
import { axeViolations } from '../support/axe.js';
import { launchChromium, screenshot } from '../support/chromium.js';
import { RelyingPartyServer, authorizationRequest, discover } from './support.js';

const TEXT = {
  en: {
    deleteLink: 'Delete my account', deleteTitle: 'Delete your account', confirm: 'I understand that my account is deleted now and cannot be restored',
    submit: 'Delete my account', deleted: 'Your account was deleted', apps: 'These applications lose access and are told you signed out: Demo shop.',
    disabledTitle: 'This account is disabled', mailSubject: 'Your Tsunagi account was deleted', create: 'Create account',
  },
  ja: {
    deleteLink: 'アカウントを削除', deleteTitle: 'アカウントの削除', confirm: 'アカウントがすぐに削除され、元に戻せないことを理解しました',
    submit: 'アカウントを削除する', deleted: 'アカウントを削除しました', apps: '次のアプリはアクセスできなくなり、ログアウトが通知されます：Demo shop。',
    disabledTitle: 'このアカウントは無効になっています', mailSubject: 'Tsunagi アカウントを削除しました', create: 'アカウントを作成',
  },
} as const;

const payloadOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString()) as Record<string, unknown>;

// Issue 15, the person's side: "Delete my account" on /account, end to end in Chromium. The relying
// party (a real HTTP server on loopback) receives back-channel logout, the Apple emulator receives the
// revocation of the refresh token Tsunagi held, the former primary address gets a confirmation, and
// the freed address signs up again as a new account. Also: "Download my data", and the page a
// disabled account gets at sign-in. Screenshots: test-output/screenshots/<locale>-60-*.png.
describe(`Account lifecycle in Chromium (${describeBackends()})`, () => {
  let server: RunningServer;
  let sink: SmtpSink;
  let apple: FakeApple;
  let rp: RelyingPartyServer;
  let browser: Browser;
  let shop: oidc.Configuration;
  let redirectUri: string;

  beforeAll(async () => {
    sink = new SmtpSink();
    apple = await new FakeApple().start();
    rp = new RelyingPartyServer();
    const origin = await rp.start();
    redirectUri = `${origin}/cb`;
    // The relying party listens on 127.0.0.1: back-channel logout may reach it only because it is allowed.
    server = await startTestServer({ SMTP_URL: await sink.start(), ...apple.env(), OUTBOUND_ALLOW_PRIVATE: '127.0.0.1' });
    const client = await server.services.clients.add({
      client_name: 'Demo shop', redirect_uris: [redirectUri], first_party: true,
      backchannel_logout_uri: `${origin}/backchannel`, backchannel_logout_session_required: true,
    });
    shop = await discover(server, client.client_id as string, client.client_secret as string);
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await sink?.close();
    await apple?.close();
    await rp?.close();
  });

  const issuer = () => server.services.config.issuer;

  async function newPage(locale: 'en' | 'ja'): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, locale: locale === 'ja' ? 'ja-JP' : 'en-US' });
    return { context, page: await context.newPage() };
  }

  /** On the login page: types the address, asks for a code, and types the code that was mailed. */
  async function enterEmailCode(page: Page, email: string) {
    await page.locator('#email').fill(email);
    await page.locator('form[action$="/email"] button[type=submit]').click();
    await page.locator('input[autocomplete="one-time-code"]').fill(codeFrom(await sink.nextMailTo(email)));
    await page.locator('form[action$="/code"] button[type=submit]').click();
  }

  /** Signs in (or up) at Demo shop by email code in this page; the tokens the shop got. */
  async function signInAtShop(page: Page, locale: 'en' | 'ja', email: string, expectSignup: boolean) {
    const req = await authorizationRequest(shop, redirectUri, { scope: 'openid email', ui_locales: locale });
    await page.goto(req.url.href);
    await enterEmailCode(page, email);
    await page.waitForURL((u) => u.href.startsWith(redirectUri) || u.pathname.endsWith('/signup') || u.pathname.includes('/passkey') || u.pathname.includes('/interaction'));
    if (expectSignup) {
      await page.getByRole('button', { name: TEXT[locale].create }).click();
      await page.waitForURL((u) => u.href.startsWith(redirectUri) || u.pathname.includes('/passkey'));
      if (!page.url().startsWith(redirectUri)) await page.locator('a.button.secondary').click();
    }
    await page.waitForURL((u) => u.href.startsWith(redirectUri));
    return oidc.authorizationCodeGrant(shop, new URL(page.url()), { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
  }

  for (const locale of ['en', 'ja'] as const) {
    const t = TEXT[locale];

    it(`deletes the account: back-channel logout reaches the shop, Apple's token is revoked, the address is free again (${locale})`, async () => {
      const email = uniqueEmail(`leave-${locale}`);
      const { context, page } = await newPage(locale);
      const tokens = await signInAtShop(page, locale, email, true);
      const sub = tokens.claims()?.sub as string;
      const account = await server.services.accounts.findAccountByVerifiedEmail({ address: email, key: email });
      expect(account?.id).toBe(sub);
      // An Apple identity linked with the refresh token Tsunagi keeps to revoke it later.
      const appleSub = `001.${Date.now()}${Math.floor(Math.random() * 1e6)}`;
      const appleToken = `r${appleSub}.0.apple`;
      await server.services.identities.link(undefined, sub, {
        provider: 'apple', issuer: apple.issuer, subject: appleSub, email: null, emailVerified: false, isPrivateEmail: false, refreshToken: appleToken,
      });

      // The account page offers both, in the person's language.
      await page.goto(`${issuer()}/account`);
      await page.getByRole('heading', { level: 2, name: locale === 'en' ? 'Your data' : 'あなたのデータ' }).waitFor();
      await page.locator('#data-h').scrollIntoViewIfNeeded();
      await screenshot(page, `${locale}-60-account-your-data`);
      expect(await axeViolations(page)).toEqual([]);

      // Download my data: a JSON file with everything, and no secret.
      const download = await page.request.get(`${issuer()}/account/export`);
      expect(download.status()).toBe(200);
      expect(download.headers()['content-disposition']).toMatch(/^attachment; filename="tsunagi-data-\d{4}-\d\d-\d\d\.json"$/);
      const exported = (await download.json()) as PersonalDataExport;
      expect(exported.account.id).toBe(sub);
      expect(exported.emails).toEqual([expect.objectContaining({ address: email, primary: true })]);
      expect(exported.linkedProviders).toEqual([expect.objectContaining({ provider: 'apple', subject: appleSub })]);
      expect(exported.applications.map((a) => a.clientName)).toContain('Demo shop');
      expect(exported.auditEvents.map((e) => e.type)).toEqual(expect.arrayContaining(['signup', 'sign_in']));
      expect(JSON.stringify(exported)).not.toContain(appleToken);

      // The confirmation page names what will happen.
      await page.getByRole('link', { name: t.deleteLink }).click();
      await page.getByRole('heading', { level: 1, name: t.deleteTitle }).waitFor();
      expect(await page.locator('ul.consequences').textContent()).toContain(t.apps);
      expect(await page.locator('ul.consequences').textContent()).toContain(email);
      await screenshot(page, `${locale}-61-delete-confirm`);
      expect(await axeViolations(page)).toEqual([]);

      const logoutsBefore = rp.logoutTokens.length;
      await page.getByLabel(t.confirm).check();
      await page.getByRole('button', { name: t.submit }).click();
      await page.getByRole('heading', { level: 1, name: t.deleted }).waitFor();
      await screenshot(page, `${locale}-62-deleted`);
      expect(await axeViolations(page)).toEqual([]);

      // The shop was told, with the sub it knows and the session's sid.
      const logout = rp.logoutTokens.slice(logoutsBefore).map(payloadOf).find((p) => p.sub === sub);
      expect(logout).toMatchObject({ sub, events: { 'http://schemas.openid.net/event/backchannel-logout': {} } });
      expect(typeof logout?.sid).toBe('string');
      // Apple received the revocation of the token Tsunagi held.
      expect(apple.revokedTokens).toContain(appleToken);
      // The former primary address got the confirmation.
      const mail = await sink.nextMailTo(email);
      expect(mail.subject).toBe(t.mailSubject);
      // Gone: the account, its identity, its tokens.
      expect(await server.services.accounts.findAccountById(sub)).toBeUndefined();
      expect(await server.services.identities.findByIssuerSubject(apple.issuer, appleSub)).toBeUndefined();
      await expect(oidc.fetchUserInfo(shop, tokens.access_token, sub)).rejects.toThrow();
      // What remains: the audit trail, under the account id, without the address.
      const { rows } = await server.services.db.pool.query<{ type: string; data: Record<string, unknown>; ip: string | null }>(
        'SELECT type, data, ip FROM audit_events WHERE account_id = $1', [sub]);
      expect(rows.map((r) => r.type)).toEqual(expect.arrayContaining(['signup', 'account_deleted']));
      expect(JSON.stringify(rows)).not.toContain(email);
      expect(rows.every((r) => r.ip === null)).toBe(true);
      await context.close();

      // The freed address signs up again, as a new account.
      const again = await newPage(locale);
      const fresh = await signInAtShop(again.page, locale, email, true);
      expect(fresh.claims()?.sub).not.toBe(sub);
      await again.context.close();
    }, 180_000);

    it(`refuses sign-in to a disabled account with its own page, and ends its session at once (${locale})`, async () => {
      const email = uniqueEmail(`disabled-${locale}`);
      const { context, page } = await newPage(locale);
      const tokens = await signInAtShop(page, locale, email, true);
      const sub = tokens.claims()?.sub as string;
      const disabled = await server.services.lifecycle.disableAccount(sub, { kind: 'operator', name: 'test' });
      expect(disabled).toMatchObject({ ok: true, sessions: 1 });
      await expect(oidc.fetchUserInfo(shop, tokens.access_token, sub)).rejects.toThrow();

      const req = await authorizationRequest(shop, redirectUri, { scope: 'openid email', ui_locales: locale });
      await page.goto(req.url.href);
      // The session ended: the login page again, and the email code leads to the refusal.
      await enterEmailCode(page, email);
      await page.getByRole('heading', { level: 1, name: t.disabledTitle }).waitFor();
      expect(page.url().startsWith(redirectUri)).toBe(false);
      await screenshot(page, `${locale}-63-account-disabled`);
      expect(await axeViolations(page)).toEqual([]);
      await context.close();
    }, 120_000);
  }
});
