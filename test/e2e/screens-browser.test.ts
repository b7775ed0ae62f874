import type { Browser } from 'playwright-core';
import * as oidc from 'openid-client';
import type { RunningServer } from '../../src/server.js';
import { SmtpSink, codeFrom } from '../fakes/smtp-sink.js';
import { describeBackends, uniqueEmail } from '../support/harness.js';
import { RelyingPartyServer, authorizationRequest, signUpOnAccountPage, startStage, type Stage } from './support.js';
import { screenshot } from '../support/chromium.js';
import { axeViolations } from '../support/axe.js';

// The sign-in screens in a real browser (a phone-sized viewport, as in LINE's in-app browser),
// with screenshots of every screen in English and Japanese saved to test-output/screenshots/.
describe(`Tsunagi's screens in Chromium (${describeBackends()})`, () => {
  let stage: Stage;
  let server: RunningServer;
  let sink: SmtpSink;
  let rp: RelyingPartyServer;
  let browser: Browser;
  let thirdParty: oidc.Configuration;
  let redirectUri: string;

  beforeAll(async () => {
    stage = await startStage({ chromium: true });
    ({ server, sink, rp, browser, redirectUri } = stage);
    thirdParty = await stage.relyingPartyClient({
      client_name: 'Example Shop', redirect_uris: [redirectUri], post_logout_redirect_uris: [`${rp.origin}/bye`],
    });
  });
  afterAll(() => stage?.close());

  const shot = screenshot;

  for (const locale of ['en', 'ja'] as const) {
    it(`signs up, consents and signs out through every screen (${locale})`, async () => {
      const context = await browser.newContext({ viewport: { width: 390, height: 780 }, locale: locale === 'ja' ? 'ja-JP' : 'en-US' });
      const page = await context.newPage();
      const cspViolations: string[] = [];
      page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });
      const email = uniqueEmail(`screens-${locale}`);
      const req = await authorizationRequest(thirdParty, redirectUri, { ui_locales: locale, scope: 'openid email profile' });
      const text = locale === 'en'
        ? { send: 'Send me a code', go: 'Continue', create: 'Create account', allow: 'Allow', signOut: 'Sign out', lead: 'to continue to Example Shop', offer: 'Add a passkey?', createPasskey: 'Create a passkey', skip: 'Not now, continue to Example Shop' }
        : { send: '確認コードを送信', go: '続ける', create: 'アカウントを作成', allow: '許可する', signOut: 'ログアウト', lead: 'Example Shop にログイン', offer: 'パスキーを追加しますか？', createPasskey: 'パスキーを作成', skip: '今はしないで Example Shop に進む' };

      await page.goto(req.url.href);
      await page.getByText(text.lead).waitFor();
      expect(await page.getAttribute('html', 'lang')).toBe(locale);
      await shot(page, `${locale}-1-login`);
      expect(await axeViolations(page)).toEqual([]);

      // An invalid address is refused on the page itself, with the field marked invalid.
      await page.getByLabel(locale === 'en' ? 'Email address' : 'メールアドレス').fill('not-an-email');
      await page.getByRole('button', { name: text.send }).click();
      await page.getByRole('alert').waitFor();
      expect(await page.getAttribute('#email', 'aria-invalid')).toBe('true');
      await shot(page, `${locale}-2-login-error`);
      expect(await axeViolations(page)).toEqual([]);

      await page.getByLabel(locale === 'en' ? 'Email address' : 'メールアドレス').fill(email);
      await page.getByRole('button', { name: text.send }).click();
      await page.locator('input[autocomplete="one-time-code"]').waitFor();
      await shot(page, `${locale}-3-code`);
      expect(await axeViolations(page)).toEqual([]);
      const mail = await sink.nextMailTo(email);
      if (locale === 'ja') expect(mail.subject).toContain('確認コード');
      await page.locator('input[autocomplete="one-time-code"]').fill(codeFrom(mail));
      await page.getByRole('button', { name: text.go }).click();

      await page.getByRole('button', { name: text.create }).waitFor();
      expect(await page.textContent('main')).toContain(email);
      await shot(page, `${locale}-4-signup`);
      expect(await axeViolations(page)).toEqual([]);
      await page.getByRole('button', { name: text.create }).click();

      // A new account is offered a passkey; this person takes the "not now" link.
      await page.getByRole('heading', { level: 1, name: text.offer }).waitFor();
      await page.getByRole('button', { name: text.createPasskey }).waitFor();
      await shot(page, `${locale}-4b-passkey-offer`);
      expect(await axeViolations(page)).toEqual([]);
      await page.getByRole('link', { name: text.skip }).click();

      await page.getByRole('button', { name: text.allow }).waitFor();
      await shot(page, `${locale}-5-consent`);
      expect(await axeViolations(page)).toEqual([]);
      const callback = page.waitForURL((u) => u.href.startsWith(redirectUri));
      await page.getByRole('button', { name: text.allow }).click();
      await callback;
      const tokens = await oidc.authorizationCodeGrant(thirdParty, new URL(page.url()), { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
      expect(tokens.claims()?.email).toBe(email);

      await page.goto(oidc.buildEndSessionUrl(thirdParty, { id_token_hint: tokens.id_token as string, ui_locales: locale }).href);
      await page.getByRole('button', { name: text.signOut }).waitFor();
      await shot(page, `${locale}-6-logout`);
      expect(await axeViolations(page)).toEqual([]);
      await page.getByRole('button', { name: text.signOut }).click();
      await page.getByRole('heading', { name: locale === 'en' ? 'Signed out' : 'ログアウトしました' }).waitFor();
      await shot(page, `${locale}-7-logged-out`);
      expect(await axeViolations(page)).toEqual([]);

      expect(cspViolations).toEqual([]);
      await context.close();
    });
  }

  for (const locale of ['en', 'ja'] as const) {
    it(`shows the account page and the phone sign-in screens (${locale})`, async () => {
      const context = await browser.newContext({ viewport: { width: 390, height: 780 }, locale: locale === 'ja' ? 'ja-JP' : 'en-US' });
      const page = await context.newPage();
      const email = uniqueEmail(`account-${locale}`);
      const issuer = server.services.config.issuer;
      await signUpOnAccountPage(page, { issuer, sink }, email);
      await page.getByRole('heading', { level: 1, name: locale === 'en' ? 'Your account' : 'アカウント' }).waitFor();
      expect(await page.textContent('main')).toContain(email);
      await shot(page, `${locale}-9-account`);
      expect(await axeViolations(page)).toEqual([]);

      await page.goto(`${issuer}/account/phones/new`);
      await page.locator('#phone').fill('090-0000-1111');
      await shot(page, `${locale}-10-add-phone`);
      expect(await axeViolations(page)).toEqual([]);
      await page.locator('form[action="/account/phones"] button[type=submit]').click();
      await page.locator('input[autocomplete="one-time-code"]').waitFor();
      await shot(page, `${locale}-11-sms-code`);
      expect(await axeViolations(page)).toEqual([]);
      const sms = server.services.outbox?.list().find((m) => m.channel === 'sms' && m.to === '+819000001111');
      expect(sms?.text).toMatch(/\d{6}/);
      await context.close();
    });
  }

  it('shows a readable error page for a bad authorization request', async () => {
    const context = await browser.newContext({ viewport: { width: 390, height: 780 } });
    const page = await context.newPage();
    const bad = await authorizationRequest(thirdParty, 'https://attacker.example.test/cb');
    const res = await page.goto(bad.url.href);
    expect(res?.status()).toBe(400);
    await page.getByRole('heading', { name: 'Something went wrong' }).waitFor();
    expect(await page.textContent('main')).toContain('redirect_uri');
    await shot(page, 'en-8-error');
    expect(await axeViolations(page)).toEqual([]);
    await context.close();
  });
});
