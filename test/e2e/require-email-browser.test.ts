import type { Browser, Page } from 'playwright-core';
import * as oidc from 'openid-client';
import type { RunningServer } from '../../src/server.js';
import { FakeApple } from '../fakes/apple.js';
import { SmtpSink, codeFrom } from '../fakes/smtp-sink.js';
import { describeBackends, uniqueEmail } from '../support/harness.js';
import { axeViolations } from '../support/axe.js';
import { authorizationRequest, startStage, type AuthRequest, type Stage } from './support.js';
import { screenshot } from '../support/chromium.js';

const TEXT = {
  en: {
    apple: 'Continue with Apple', create: 'Create account', requireTitle: 'Add your email address', send: 'Send me a code', go: 'Continue',
    hint: 'Use an address you can read now. The Hide My Email address from Apple is not added automatically.',
    taken: 'This address belongs to another Tsunagi account, so it cannot be added to this one.',
    signInInstead: 'Sign in to that account instead', useOther: 'Or use a different email', skip: 'Not now, continue to Newsletter',
  },
  ja: {
    apple: 'Apple で続ける', create: 'アカウントを作成', requireTitle: 'メールアドレスを追加', send: '確認コードを送信', go: '続ける',
    hint: '今すぐ受信できるアドレスを入力してください。Apple の「メールを非公開」のアドレスは自動では登録されません。',
    taken: 'このアドレスは別の Tsunagi アカウントで使われているため、このアカウントには追加できません。',
    signInInstead: 'そのアカウントでログインする', useOther: 'または別のメールアドレスを使う', skip: '今はしないで Newsletter に進む',
  },
} as const;

// Issue 12 §4: after an Apple signup with a Hide My Email address, a client that requires an email
// asks for one. The hint agrees with the screen before (the relay address is not registered), and an
// address that belongs to another account gets a real way on: sign in to that account instead (the
// client's authorization starts again with the address as login_hint, and that account is proven
// by its own email code; nothing is merged), or use a different address.
// Screenshots: test-output/screenshots/<locale>-40-*.png.
describe(`Require-email after an Apple relay signup in Chromium (${describeBackends()})`, () => {
  let stage: Stage;
  let server: RunningServer;
  let sink: SmtpSink;
  let apple: FakeApple;
  let browser: Browser;
  let mailer: oidc.Configuration;
  let redirectUri: string;

  beforeAll(async () => {
    stage = await startStage({ apple: true, localhostIssuer: true, chromium: true });
    ({ server, sink, apple, browser, redirectUri } = stage);
    mailer = await stage.relyingPartyClient({ client_name: 'Newsletter', redirect_uris: [redirectUri], first_party: true, require_email: true });
  });
  afterAll(() => stage?.close());

  const sub = () => `${Date.now()}${Math.floor(Math.random() * 1e6)}`;

  async function open(locale: 'en' | 'ja') {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, locale: locale === 'ja' ? 'ja-JP' : 'en-US' });
    const page = await context.newPage();
    const req = await authorizationRequest(mailer, redirectUri, { scope: 'openid email profile', ui_locales: locale });
    await page.goto(req.url.href);
    return { context, page, req };
  }

  /** Leaves through the passkey offer when it is shown, and redeems the code at the client. */
  async function tokensAt(page: Page, req: AuthRequest, skip: string) {
    await page.waitForURL((u) => u.href.startsWith(redirectUri) || u.pathname.includes('/passkey'));
    if (!page.url().startsWith(redirectUri)) {
      await page.getByRole('link', { name: skip }).click();
      await page.waitForURL((u) => u.href.startsWith(redirectUri));
    }
    return oidc.authorizationCodeGrant(mailer, new URL(page.url()), { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
  }

  /** An account made with an email code: its sub. */
  async function existingAccount(locale: 'en' | 'ja', email: string): Promise<string> {
    const { context, page, req } = await open(locale);
    await page.locator('#email').fill(email);
    await page.locator('form[action$="/email"] button[type=submit]').click();
    await page.locator('input[autocomplete="one-time-code"]').fill(codeFrom(await sink.nextMailTo(email)));
    await page.locator('form[action$="/code"] button[type=submit]').click();
    await page.locator('form[action$="/signup"] button[type=submit]').click();
    const tokens = await tokensAt(page, req, TEXT[locale].skip);
    await context.close();
    return tokens.claims()?.sub as string;
  }

  /** Apple signup with a relay address, up to the require-email page with `taken` typed and refused. */
  async function refusedAddress(locale: 'en' | 'ja', taken: string, shots: boolean) {
    const t = TEXT[locale];
    const opened = await open(locale);
    const { page } = opened;
    const appleSub = `001.${sub()}`;
    apple.nextUser({ sub: appleSub, email: `${sub()}@privaterelay.appleid.com`, email_verified: 'true', is_private_email: 'true', name: 'Ren Kato' });
    await page.getByRole('button', { name: t.apple }).click();
    await page.getByRole('button', { name: t.create }).click();
    await page.getByRole('heading', { level: 1, name: t.requireTitle }).waitFor();
    // The hint agrees with the signup screen: the relay address is not registered.
    expect((await page.locator('form .detail').textContent())?.trim()).toBe(t.hint);
    if (shots) {
      await screenshot(page, `${locale}-40-require-email`);
      expect(await axeViolations(page)).toEqual([]);
    }
    await page.locator('#email').fill(taken);
    await page.getByRole('button', { name: t.send }).click();
    await page.getByRole('alert').filter({ hasText: t.taken }).waitFor();
    const newAccountId = (await server.services.identities.findByIssuerSubject(apple.issuer, appleSub))?.accountId;
    expect(newAccountId).toBeDefined();
    return { ...opened, appleSub, newAccountId: newAccountId as string };
  }

  for (const locale of ['en', 'ja'] as const) {
    const t = TEXT[locale];

    it(`an address of another account: "sign in to that account instead" proves that account by its own code and merges nothing (${locale})`, async () => {
      const ownerEmail = uniqueEmail(`req-owner-${locale}`);
      const ownerId = await existingAccount(locale, ownerEmail);
      const { context, page, req, appleSub, newAccountId } = await refusedAddress(locale, ownerEmail, true);
      expect(newAccountId).not.toBe(ownerId);
      const signInInstead = page.getByRole('link', { name: t.signInInstead });
      await signInInstead.waitFor();
      // A full-size button, not a 24 px text link (a generic "p > a" rule once shrank it).
      expect((await signInInstead.boundingBox())?.height).toBeGreaterThanOrEqual(44);
      await page.getByRole('heading', { level: 2, name: t.useOther }).waitFor();
      expect(await page.locator('#email').inputValue()).toBe(ownerEmail);
      await screenshot(page, `${locale}-41-require-email-taken`);
      expect(await axeViolations(page)).toEqual([]);

      await signInInstead.click();
      // A fresh sign-in to the same client, the address already in the field (login_hint).
      await page.locator('form[action$="/email"]').waitFor();
      expect(await page.locator('#email').inputValue()).toBe(ownerEmail);
      await screenshot(page, `${locale}-42-sign-in-instead`);
      await page.locator('form[action$="/email"] button[type=submit]').click();
      await page.locator('input[autocomplete="one-time-code"]').fill(codeFrom(await sink.nextMailTo(ownerEmail)));
      await page.locator('form[action$="/code"] button[type=submit]').click();
      // The authorization that was started again is a new one: the client redeems the code it receives
      // with the same PKCE verifier, state and nonce it sent the first time.
      const tokens = await tokensAt(page, req, t.skip);
      expect(tokens.claims()).toMatchObject({ sub: ownerId, email: ownerEmail, email_verified: true });
      // Nothing moved: Apple stays on the account it created.
      expect((await server.services.identities.findByIssuerSubject(apple.issuer, appleSub))?.accountId).toBe(newAccountId);
      await context.close();
    });

    it(`an address of another account: "use a different email" adds a new address by code (${locale})`, async () => {
      const ownerEmail = uniqueEmail(`req-owner2-${locale}`);
      await existingAccount(locale, ownerEmail);
      const { context, page, req, newAccountId } = await refusedAddress(locale, ownerEmail, false);
      const mine = uniqueEmail(`req-mine-${locale}`);
      await page.locator('#email').fill(mine);
      await page.getByRole('button', { name: t.send }).click();
      await page.locator('input[autocomplete="one-time-code"]').fill(codeFrom(await sink.nextMailTo(mine)));
      await page.getByRole('button', { name: t.go }).click();
      const tokens = await tokensAt(page, req, t.skip);
      expect(tokens.claims()).toMatchObject({ sub: newAccountId, email: mine, email_verified: true });
      await context.close();
    });
  }
});
