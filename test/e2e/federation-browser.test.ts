import type { Browser, Page } from 'playwright-core';
import * as oidc from 'openid-client';
import type { RunningServer } from '../../src/server.js';
import { FakeApple } from '../fakes/apple.js';
import { FakeGoogle } from '../fakes/google.js';
import { SmtpSink, codeFrom } from '../fakes/smtp-sink.js';
import { describeBackends, uniqueEmail } from '../support/harness.js';
import { authorizationRequest, startStage, type AuthRequest, type Stage } from './support.js';
import { screenshot } from '../support/chromium.js';
import { axeViolations } from '../support/axe.js';

const TEXT = {
  en: {
    google: 'Continue with Google', apple: 'Continue with Apple', create: 'Create account', linkTitle: 'Link your account?',
    requireTitle: 'Add your email address', send: 'Send me a code', go: 'Continue', skip: 'Not now, continue to Shop',
    cancelled: 'The sign-in was cancelled at Google.',
    otherBrowser: 'This sign-in was started in another browser. Start again here',
  },
  ja: {
    google: 'Google で続ける', apple: 'Apple で続ける', create: 'アカウントを作成', linkTitle: 'アカウントを連携しますか？',
    requireTitle: 'メールアドレスを追加', send: '確認コードを送信', go: '続ける', skip: '今はしないで Shop に進む',
    cancelled: 'Google でログインがキャンセルされました。',
    otherBrowser: 'このログインは別のブラウザで開始されました。このブラウザで最初からやり直してください。',
  },
} as const;

// Google and Apple sign-in in Chromium, every screen in English and Japanese. Tsunagi runs at
// http://localhost:<port> and the emulators at http://127.0.0.1:<port>, so Apple's form_post back to
// Tsunagi is a real cross-site POST (no SameSite=Lax cookie on it), as with the real Apple.
describe(`Google and Apple screens in Chromium (${describeBackends()})`, () => {
  let stage: Stage;
  let server: RunningServer;
  let sink: SmtpSink;
  let google: FakeGoogle;
  let apple: FakeApple;
  let browser: Browser;
  let shop: oidc.Configuration;
  let mailer: oidc.Configuration;
  let redirectUri: string;

  beforeAll(async () => {
    stage = await startStage({ google: true, apple: true, localhostIssuer: true, chromium: true });
    ({ server, sink, google, apple, browser, redirectUri } = stage);
    shop = await stage.relyingPartyClient({ client_name: 'Shop', redirect_uris: [redirectUri], first_party: true });
    mailer = await stage.relyingPartyClient({ client_name: 'Newsletter', redirect_uris: [redirectUri], first_party: true, require_email: true });
  });
  afterAll(() => stage?.close());

  const shot = screenshot;
  const sub = () => `${Date.now()}${Math.floor(Math.random() * 1e6)}`;

  async function open(locale: 'en' | 'ja', config: oidc.Configuration) {
    const context = await browser.newContext({ viewport: { width: 390, height: 780 }, locale: locale === 'ja' ? 'ja-JP' : 'en-US' });
    const page = await context.newPage();
    const csp: string[] = [];
    page.on('console', (m) => { if (/Content Security Policy/i.test(m.text()) && page.url().startsWith(server.services.config.issuer)) csp.push(m.text()); });
    const req = await authorizationRequest(config, redirectUri, { scope: 'openid email profile', ui_locales: locale });
    await page.goto(req.url.href);
    return { context, page, req, csp };
  }

  async function tokensAt(page: Page, config: oidc.Configuration, req: AuthRequest) {
    await page.waitForURL((u) => u.href.startsWith(redirectUri));
    return oidc.authorizationCodeGrant(config, new URL(page.url()), { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
  }

  for (const locale of ['en', 'ja'] as const) {
    const t = TEXT[locale];

    it(`signs up with Google after the confirmation screen (${locale})`, async () => {
      const { context, page, req, csp } = await open(locale, shop);
      await page.getByRole('button', { name: t.google }).waitFor();
      await shot(page, `${locale}-20-login-upstream`);
      expect(await axeViolations(page)).toEqual([]);
      const email = `g${sub()}@gmail.com`;
      google.nextUser({ sub: sub(), email, email_verified: true, name: locale === 'ja' ? '佐藤 花' : 'Hana Sato' });
      await page.getByRole('button', { name: t.google }).click();
      await page.getByRole('button', { name: t.create }).waitFor();
      expect(await page.textContent('main')).toContain(email);
      await shot(page, `${locale}-21-upstream-signup`);
      expect(await axeViolations(page)).toEqual([]);
      await page.getByRole('button', { name: t.create }).click();
      await page.getByRole('link', { name: t.skip }).click();
      const tokens = await tokensAt(page, shop, req);
      expect(tokens.claims()).toMatchObject({ email, amr: ['fed'] });
      expect(csp).toEqual([]);
      await context.close();
    });

    it(`links Apple to an existing account after an email code, across Apple's cross-site form_post (${locale})`, async () => {
      // The existing account, made with an email code.
      const email = uniqueEmail(`apple-link-${locale}`);
      const first = await open(locale, shop);
      await first.page.locator('#email').fill(email);
      await first.page.locator('form[action$="/email"] button[type=submit]').click();
      await first.page.locator('input[autocomplete="one-time-code"]').fill(codeFrom(await sink.nextMailTo(email)));
      await first.page.locator('form[action$="/code"] button[type=submit]').click();
      await first.page.locator('form[action$="/signup"] button[type=submit]').click();
      await first.page.getByRole('link', { name: t.skip }).click();
      const owner = await tokensAt(first.page, shop, first.req);
      await first.context.close();

      const { context, page, req } = await open(locale, shop);
      const appleSub = `001.${sub()}`;
      apple.nextUser({ sub: appleSub, email, email_verified: 'true', is_private_email: 'false' });
      await page.getByRole('button', { name: t.apple }).click();
      await page.getByRole('heading', { level: 1, name: t.linkTitle }).waitFor();
      await shot(page, `${locale}-22-link-offer`);
      expect(await axeViolations(page)).toEqual([]);
      await page.locator('form[action$="/link/email"] button[type=submit]').click();
      await page.locator('input[autocomplete="one-time-code"]').waitFor();
      await shot(page, `${locale}-23-link-code`);
      expect(await axeViolations(page)).toEqual([]);
      await page.locator('input[autocomplete="one-time-code"]').fill(codeFrom(await sink.nextMailTo(email)));
      await page.locator('form[action$="/link/code"] button[type=submit]').click();
      const tokens = await tokensAt(page, shop, req);
      expect(tokens.claims()?.sub).toBe(owner.claims()?.sub);
      expect(tokens.claims()?.amr).toEqual(['fed', 'otp']);
      expect((await server.services.identities.findByIssuerSubject(apple.issuer, appleSub))?.accountId).toBe(owner.claims()?.sub);
      await context.close();
    });

    it(`signs up with an Apple relay address and asks for a real email the client requires (${locale})`, async () => {
      const { context, page, req } = await open(locale, mailer);
      apple.nextUser({ sub: `001.${sub()}`, email: `${sub()}@privaterelay.appleid.com`, email_verified: 'true', is_private_email: 'true', name: 'Ren Kato' });
      await page.getByRole('button', { name: t.apple }).click();
      await page.getByRole('button', { name: t.create }).waitFor();
      expect(await page.textContent('main')).not.toContain('privaterelay');
      await shot(page, `${locale}-24-upstream-signup-relay`);
      expect(await axeViolations(page)).toEqual([]);
      await page.getByRole('button', { name: t.create }).click();
      await page.getByRole('heading', { level: 1, name: t.requireTitle }).waitFor();
      await shot(page, `${locale}-25-require-email`);
      expect(await axeViolations(page)).toEqual([]);
      const mine = uniqueEmail(`relay-${locale}`);
      await page.locator('#email').fill(mine);
      await page.getByRole('button', { name: t.send }).click();
      await page.locator('input[autocomplete="one-time-code"]').fill(codeFrom(await sink.nextMailTo(mine)));
      await page.getByRole('button', { name: t.go }).click();
      const tokens = await tokensAt(page, mailer, req);
      expect(tokens.claims()).toMatchObject({ email: mine, email_verified: true });
      await context.close();
    });

    it(`shows a readable page when the person cancels at Google, with a way back (${locale})`, async () => {
      const { context, page } = await open(locale, shop);
      google.failNextAuthorize.push('access_denied');
      await page.getByRole('button', { name: t.google }).click();
      await page.getByText(t.cancelled).waitFor();
      await shot(page, `${locale}-26-upstream-error`);
      expect(await axeViolations(page)).toEqual([]);
      await page.locator('a.button.secondary').click();
      await page.getByRole('button', { name: t.google }).waitFor();
      await context.close();
    });
  }

  for (const [locale, provider, aProvider] of [['en', 'google', 'a Google'], ['ja', 'apple', 'an Apple']] as const) {
    it(`${aProvider} sign-in URL opened in another browser changes nothing there and says so; the browser that began it still finishes (${locale})`, async () => {
      const t = TEXT[locale];
      const emulator = provider === 'google' ? google : apple;
      const started = await open(locale, shop);
      // The browser that begins the sign-in does not go to the provider: its URL is passed on instead.
      await started.context.route(`${emulator.url}/**`, (route) => route.abort());
      const [toProvider] = await Promise.all([
        started.page.waitForRequest((r) => r.url().startsWith(emulator.url)),
        started.page.getByRole('button', { name: provider === 'google' ? t.google : t.apple }).click(),
      ]);
      const providerUrl = toProvider.url();

      // Another browser (its own cookie jar) opens it, signed in at the provider: it comes straight back.
      const other = await browser.newContext({ viewport: { width: 390, height: 780 }, locale: locale === 'ja' ? 'ja-JP' : 'en-US' });
      const victimPage = await other.newPage();
      emulator.nextUser({ sub: provider === 'apple' ? `001.${sub()}` : sub(), email: `v${sub()}@gmail.com`, email_verified: true });
      await victimPage.goto(providerUrl);
      await victimPage.getByText(t.otherBrowser).waitFor();
      await shot(victimPage, `${locale}-29-upstream-other-browser`);
      expect(await axeViolations(victimPage)).toEqual([]);
      await other.close();

      // The browser that began it can still finish: the attempt was not used up.
      await started.context.unroute(`${emulator.url}/**`);
      const ownEmail = `o${sub()}@gmail.com`;
      emulator.nextUser({ sub: provider === 'apple' ? `001.${sub()}` : sub(), email: ownEmail, email_verified: true, is_private_email: false });
      await started.page.goto(providerUrl);
      await started.page.getByRole('button', { name: t.create }).waitFor();
      expect(await started.page.textContent('main')).toContain(ownEmail);
      await started.context.close();
    });
  }

  /** Signs up by email code in this page, optionally creating a passkey on the offer page. */
  async function emailSignup(page: Page, email: string, passkey: boolean) {
    await page.locator('#email').fill(email);
    await page.locator('form[action$="/email"] button[type=submit]').click();
    await page.locator('input[autocomplete="one-time-code"]').fill(codeFrom(await sink.nextMailTo(email)));
    await page.locator('form[action$="/code"] button[type=submit]').click();
    await page.locator('form[action$="/signup"] button[type=submit]').click();
    await page.locator('form[data-passkey-register]').waitFor();
    if (passkey) await page.locator('form[data-passkey-register] button[type=submit]').click();
    else await page.locator('a.button.secondary').click();
  }

  it('links Google after proving the account with its passkey (virtual authenticator), amr fed + hwk', async () => {
    const { context, page, req } = await open('en', shop);
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable', { enableUI: false });
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
    });
    const email = `pk${sub()}@gmail.com`;
    await emailSignup(page, email, true);
    const owner = await tokensAt(page, shop, req);

    const again = await authorizationRequest(shop, redirectUri, { scope: 'openid email', prompt: 'login' });
    const googleSub = sub();
    google.nextUser({ sub: googleSub, email, email_verified: true });
    // The authenticator answers nothing while the login page is open (its autofill would sign in by
    // passkey right there); the link page is what this test is about.
    await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled: false });
    await page.goto(again.url.href);
    await page.getByRole('button', { name: 'Continue with Google' }).click();
    await page.getByRole('heading', { level: 1, name: 'Link your account?' }).waitFor();
    await screenshot(page, 'en-27-link-offer-passkey');
    expect(await axeViolations(page)).toEqual([]);
    await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled: true });
    await page.getByRole('button', { name: 'Use a passkey' }).click();
    const linked = await tokensAt(page, shop, again);
    expect(linked.claims()?.sub).toBe(owner.claims()?.sub);
    expect(linked.claims()?.amr).toEqual(['fed', 'hwk']);
    expect((await server.services.identities.findByIssuerSubject(google.issuer, googleSub))?.accountId).toBe(owner.claims()?.sub);
    await context.close();
  });

  it('links Apple through the account\'s linked Google (login_hint), and unlinks it on the account page (ja)', async () => {
    const email = `both${sub()}@gmail.com`;
    const googleSub = sub();
    const first = await open('ja', shop);
    google.nextUser({ sub: googleSub, email, email_verified: true });
    await first.page.getByRole('button', { name: TEXT.ja.google }).click();
    await first.page.getByRole('button', { name: TEXT.ja.create }).click();
    await first.page.getByRole('link', { name: TEXT.ja.skip }).click();
    const owner = await tokensAt(first.page, shop, first.req);
    await first.context.close();

    const { context, page, req } = await open('ja', shop);
    const appleSub = `001.${sub()}`;
    apple.nextUser({ sub: appleSub, email, email_verified: 'true', is_private_email: 'false' });
    google.addUser({ sub: googleSub, email, email_verified: true });
    await page.getByRole('button', { name: TEXT.ja.apple }).click();
    await page.getByRole('heading', { level: 1, name: TEXT.ja.linkTitle }).waitFor();
    await screenshot(page, 'ja-27-link-offer-google');
    expect(await axeViolations(page)).toEqual([]);
    await page.getByRole('button', { name: 'Google でログイン' }).click();
    const linked = await tokensAt(page, shop, req);
    expect(linked.claims()?.sub).toBe(owner.claims()?.sub);
    expect(google.authorizeRequests.at(-1)?.query.login_hint).toBe(googleSub);

    // The account page lists both; unlinking Apple leaves Google.
    await page.goto(`${server.services.config.issuer}/account`);
    await page.getByRole('heading', { level: 2, name: '外部ログイン' }).waitFor();
    expect(await page.textContent('#providers-h + ul')).toContain('Apple');
    await screenshot(page, 'ja-28-account-providers');
    expect(await axeViolations(page)).toEqual([]);
    const appleIdentity = await server.services.identities.findByIssuerSubject(apple.issuer, appleSub);
    await page.locator(`form[action="/account/providers/${appleIdentity?.id}/unlink"] button`).click();
    await page.waitForURL(/notice=upstream_unlinked/);
    expect(await server.services.identities.findByIssuerSubject(apple.issuer, appleSub)).toBeUndefined();
    expect(await server.services.identities.findByIssuerSubject(google.issuer, googleSub)).toBeDefined();
    await context.close();
  });
});
