import type { Browser } from 'playwright-core';
import * as oidc from 'openid-client';
import type { RunningServer } from '../../src/server.js';
import { FakeTwilio, smsCode } from '../fakes/twilio.js';
import type { SmtpSink } from '../fakes/smtp-sink.js';
import { describeBackends, uniqueEmail } from '../support/harness.js';
import { authorizationRequest, signUpOnAccountPage, startStage, type Stage } from './support.js';
import { screenshot } from '../support/chromium.js';
import { axeViolations } from '../support/axe.js';

// A person's whole journey in Chromium, with SMS through the fake Twilio (real HTTP, the real SDK):
// sign up by email code, add and verify a phone on the account page, sign out, sign in by SMS code;
// and the account page refusing to remove the last way to sign in.
describe(`a person's journey in Chromium (${describeBackends()})`, () => {
  let stage: Stage;
  let server: RunningServer;
  let sink: SmtpSink;
  let twilio: FakeTwilio;
  let browser: Browser;
  let client: oidc.Configuration;
  let redirectUri: string;
  let issuer: string;
  let phoneSeq = 0;

  beforeAll(async () => {
    stage = await startStage({ twilio: true, chromium: true });
    ({ server, sink, twilio, browser, issuer, redirectUri } = stage);
    client = await stage.relyingPartyClient({ client_name: 'Example Shop', redirect_uris: [redirectUri], first_party: true });
  });
  afterAll(() => stage?.close());

  const shot = screenshot;

  for (const locale of ['en', 'ja'] as const) {
    it(`adds a phone through Twilio, signs out, and signs in by SMS code (${locale})`, async () => {
      const t = locale === 'en'
        ? { addPhone: 'Add a phone number', usePhone: 'Sign in with a phone number instead', signOut: 'Sign out', added: 'The phone number was added.' }
        : { addPhone: '電話番号を追加', usePhone: '電話番号でログイン', signOut: 'ログアウト', added: '電話番号を追加しました。' };
      const context = await browser.newContext({ viewport: { width: 390, height: 780 }, locale: locale === 'ja' ? 'ja-JP' : 'en-US' });
      const page = await context.newPage();
      const email = uniqueEmail(`journey-${locale}`);
      const digits = String((Date.now() + phoneSeq++) % 100_000_000).padStart(8, '0');
      const typed = `080-${digits.slice(0, 4)}-${digits.slice(4)}`;
      const e164 = `+8180${digits}`;

      await signUpOnAccountPage(page, { issuer, sink }, email);
      await page.getByRole('link', { name: t.addPhone }).click();
      await page.locator('#phone').fill(typed);
      await page.locator('form[action="/account/phones"] button[type=submit]').click();
      await page.locator('input[autocomplete="one-time-code"]').waitFor();
      const sms = twilio.lastMessageTo(e164);
      expect(sms?.from).toBe('+15005550006');
      await page.locator('input[autocomplete="one-time-code"]').fill(smsCode(sms?.body ?? ''));
      await page.locator('form:has(input[autocomplete="one-time-code"]) button[type=submit]').first().click();
      await page.getByText(t.added).waitFor();
      expect(await page.textContent('main')).toContain(digits.slice(4));
      await shot(page, `${locale}-16-account-phone-added`);
      expect(await axeViolations(page)).toEqual([]);
      const account = await server.services.accounts.findAccountByVerifiedPhone(e164);
      expect(account?.emails.map((e) => e.address)).toEqual([email]);

      await page.getByRole('link', { name: t.signOut }).click();
      await page.locator('button[name=logout][value=yes]').click();
      await page.getByRole('heading', { level: 1, name: locale === 'en' ? 'Signed out' : 'ログアウトしました' }).waitFor();

      const req = await authorizationRequest(client, redirectUri, { scope: 'openid phone', ui_locales: locale });
      await page.goto(req.url.href);
      await page.getByRole('link', { name: t.usePhone }).click();
      await page.locator('#phone').fill(typed);
      await page.locator('form[action$="/phone"] button[type=submit]').click();
      await page.locator('input[autocomplete="one-time-code"]').waitFor();
      await shot(page, `${locale}-17-login-sms-code`);
      expect(await axeViolations(page)).toEqual([]);
      const loginSms = twilio.lastMessageTo(e164);
      expect(loginSms).not.toBe(sms);
      await page.locator('input[autocomplete="one-time-code"]').fill(smsCode(loginSms?.body ?? ''));
      await page.locator('form[action$="/sms-code"] button[type=submit]').click();
      await page.waitForURL((u) => u.href.startsWith(redirectUri));
      const tokens = await oidc.authorizationCodeGrant(client, new URL(page.url()), { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
      expect(tokens.claims()?.amr).toEqual(['sms']);
      expect(tokens.claims()?.phone_number).toBe(e164);
      expect(tokens.claims()?.phone_number_verified).toBe(true);
      await context.close();
    });
  }

  it('refuses to remove the last way to sign in, and says why', async () => {
    const context = await browser.newContext({ viewport: { width: 390, height: 780 }, locale: 'en-US' });
    const page = await context.newPage();
    const email = uniqueEmail('journey-last');
    await signUpOnAccountPage(page, { issuer, sink }, email);
    const remove = page.locator('form[action$="/remove"] button[type=submit]').first();
    expect(await remove.isDisabled()).toBe(true);
    const explanation = await page.locator('#last-method').textContent();
    expect(explanation).toContain('only one way to sign in');
    await shot(page, 'en-18-account-last-method');
    expect(await axeViolations(page)).toEqual([]);

    // Forcing the form anyway (as a script could) changes nothing and says why.
    const action = await page.locator('form[action$="/remove"]').first().getAttribute('action');
    await remove.evaluate((button) => { button.removeAttribute('disabled'); });
    await remove.click();
    await page.waitForURL(/notice=last_method/);
    expect(action).toMatch(/^\/account\/emails\//);
    const account = await server.services.accounts.findAccountByVerifiedEmail({ address: email, key: email });
    expect(account?.emails).toHaveLength(1);
    await context.close();
  });

  it('refuses passkey requests without the CSRF header or with a forged response, and stores nothing', async () => {
    const context = await browser.newContext({ viewport: { width: 390, height: 780 }, locale: 'en-US' });
    const page = await context.newPage();
    const email = uniqueEmail('journey-forged');
    await signUpOnAccountPage(page, { issuer, sink }, email);
    const csrf = await page.locator('form[data-passkey-register]').getAttribute('data-csrf');
    expect(csrf).toBeTruthy();

    const noHeader = await page.request.post(`${issuer}/account/passkeys/options`, { data: {} });
    expect(noHeader.status()).toBe(403);
    expect(await noHeader.json()).toMatchObject({ error: 'csrf', message: expect.stringContaining('Reload') });

    const options = await page.request.post(`${issuer}/account/passkeys/options`, { data: {}, headers: { 'x-csrf-token': csrf as string } });
    expect(options.status()).toBe(200);
    const { challenge } = await options.json() as { challenge: string };
    const clientDataJSON = Buffer.from(JSON.stringify({ type: 'webauthn.create', challenge, origin: issuer })).toString('base64url');
    const forged = await page.request.post(`${issuer}/account/passkeys/verify`, {
      headers: { 'x-csrf-token': csrf as string },
      data: { name: 'forged', response: { id: 'AAAA', rawId: 'AAAA', type: 'public-key', clientExtensionResults: {}, response: { clientDataJSON, attestationObject: 'AAAA' } } },
    });
    expect(forged.status()).toBe(400);
    expect(await forged.json()).toMatchObject({ error: 'invalid_response' });
    // The challenge was spent by that attempt: replaying it with anything else is refused too.
    const replay = await page.request.post(`${issuer}/account/passkeys/verify`, {
      headers: { 'x-csrf-token': csrf as string },
      data: { name: 'replay', response: { id: 'AAAA', rawId: 'AAAA', type: 'public-key', clientExtensionResults: {}, response: { clientDataJSON, attestationObject: 'AAAA' } } },
    });
    expect(replay.status()).toBe(400);
    expect((await replay.json() as { error: string }).error).toBe('challenge_used');
    const account = await server.services.accounts.findAccountByVerifiedEmail({ address: email, key: email });
    expect(await server.services.passkeyStore.listForAccount(account?.id as string)).toEqual([]);
    await context.close();
  });
});
