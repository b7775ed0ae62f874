import type { Browser, Page } from 'playwright-core';
import * as oidc from 'openid-client';
import type { RunningServer } from '../../src/server.js';
import { SmtpSink, codeFrom } from '../fakes/smtp-sink.js';
import { describeBackends, uniqueEmail } from '../support/harness.js';
import { RelyingPartyServer, authorizationRequest, discover, signUpOnAccountPage, startStage, type Stage } from './support.js';
import { screenshot } from '../support/chromium.js';
import { DEVICE_CODE_GRANT } from '../../src/oidc/device-flow.js';
import { axeViolations } from '../support/axe.js';

// The recovery paths off the happy path (issue 12): an expired code, a stale logout form, switching
// language on any screen, too many wrong codes and resending. English and Japanese, phone-sized.
describe(`recovery paths in Chromium (${describeBackends()})`, () => {
  let stage: Stage;
  let server: RunningServer;
  let sink: SmtpSink;
  let rp: RelyingPartyServer;
  let browser: Browser;
  let client: oidc.Configuration;
  let clientId: string;
  let deviceClientId: string;
  let issuer: string;
  let redirectUri: string;
  let phoneSeq = 0;

  beforeAll(async () => {
    stage = await startStage({ chromium: true });
    ({ server, sink, rp, browser, issuer, redirectUri } = stage);
    const added = await stage.addClient({
      client_name: 'Example Shop', first_party: true, redirect_uris: [redirectUri], post_logout_redirect_uris: [`${rp.origin}/bye`],
    });
    clientId = added.clientId;
    client = await discover(server, clientId, added.clientSecret);
    ({ clientId: deviceClientId } = await stage.addClient({
      client_name: 'Example TV', redirect_uris: [redirectUri], token_endpoint_auth_method: 'none', first_party: true,
      grant_types: ['authorization_code', DEVICE_CODE_GRANT],
    }));
  });
  afterAll(() => stage?.close());

  const text = {
    en: {
      send: 'Send me a code', go: 'Continue', resend: 'Send a new code', sent: 'New code sent.', create: 'Create account', email: 'Email address',
      expired: (to: string) => `That code has expired. We can send a new one to ${to}.`, usePhone: 'Sign in with a phone number instead',
    },
    ja: {
      send: '確認コードを送信', go: '続ける', resend: '新しいコードを送信', sent: '新しいコードを送信しました。', create: 'アカウントを作成', email: 'メールアドレス',
      expired: (to: string) => `確認コードの有効期限が切れました。${to} に新しいコードを送信できます。`, usePhone: '電話番号でログイン',
    },
  } as const;

  const contextFor = (locale: 'en' | 'ja') => browser.newContext({ viewport: { width: 390, height: 844 }, locale: locale === 'ja' ? 'ja-JP' : 'en-US' });

  /** Expires every live code sent to target: the test moves the code past its lifetime instead of waiting 10 minutes. */
  async function expireCodesTo(target: string): Promise<void> {
    const r = await server.services.db.pool.query(
      `UPDATE otp_challenges SET expires_at = now() - interval '1 second' WHERE target = $1 AND consumed_at IS NULL`, [target]);
    expect(r.rowCount).toBeGreaterThan(0);
  }

  async function startEmailSignIn(page: Page, locale: 'en' | 'ja', email: string): Promise<string> {
    const req = await authorizationRequest(client, redirectUri, { ui_locales: locale });
    await page.goto(req.url.href);
    await page.getByLabel(text[locale].email).fill(email);
    await page.getByRole('button', { name: text[locale].send }).click();
    await page.locator('input[autocomplete="one-time-code"]').waitFor();
    return codeFrom(await sink.nextMailTo(email));
  }

  for (const locale of ['en', 'ja'] as const) {
    it(`keeps the address when an email code has expired, and sends a new one there (${locale})`, async () => {
      const t = text[locale];
      const context = await contextFor(locale);
      const page = await context.newPage();
      const email = uniqueEmail(`expired-${locale}`);
      const oldCode = await startEmailSignIn(page, locale, email);
      await expireCodesTo(email);

      await page.locator('input[autocomplete="one-time-code"]').fill(oldCode);
      await page.getByRole('button', { name: t.go }).click();
      await page.getByRole('alert').waitFor();
      expect((await page.getByRole('alert').textContent())?.trim()).toBe(t.expired(email));
      // Sending a new code is the page's primary action, and no form field carries the address.
      const resend = page.getByRole('button', { name: t.resend });
      expect(await resend.getAttribute('class')).toBe('primary');
      expect(await page.locator(`input[value="${email}"]`).count()).toBe(0);
      await screenshot(page, `${locale}-recovery-1-email-code-expired`);
      expect(await axeViolations(page)).toEqual([]);

      // A reload of the code page says the same, instead of an empty address.
      await page.reload();
      expect((await page.getByRole('alert').textContent())?.trim()).toBe(t.expired(email));

      await resend.click();
      await page.getByRole('status').waitFor();
      expect((await page.getByRole('status').textContent())?.trim()).toBe(t.sent);
      expect(await page.textContent('main')).toContain(email);
      await screenshot(page, `${locale}-recovery-2-email-code-resent`);
      expect(await axeViolations(page)).toEqual([]);
      const newCode = codeFrom(await sink.nextMailTo(email));
      await page.locator('input[autocomplete="one-time-code"]').fill(newCode);
      await page.getByRole('button', { name: t.go }).click();
      await page.getByRole('button', { name: t.create }).waitFor();
      expect(await page.textContent('main')).toContain(email);
      await context.close();
    });

    it(`says an SMS code has expired and sends a new one to the same number (${locale})`, async () => {
      const t = text[locale];
      const digits = String((Date.now() + phoneSeq++) % 100_000_000).padStart(8, '0');
      const e164 = `+8190${digits}`;
      const tx = await server.services.db.pool.connect();
      try {
        await tx.query('BEGIN');
        const account = await server.services.accounts.createAccountWithVerifiedEmail(tx, { address: uniqueEmail('sms'), key: uniqueEmail('sms') });
        await server.services.accounts.addVerifiedPhone(tx, account.id, e164);
        await tx.query('COMMIT');
      } finally { tx.release(); }
      const outbox = server.services.outbox;
      if (!outbox) throw new Error('the test server has no dev outbox for SMS');
      const smsTo = () => outbox.list().filter((m) => m.channel === 'sms' && m.to === e164);

      const context = await contextFor(locale);
      const page = await context.newPage();
      const req = await authorizationRequest(client, redirectUri, { ui_locales: locale, scope: 'openid phone' });
      await page.goto(req.url.href);
      await page.getByRole('link', { name: t.usePhone }).click();
      await page.locator('#phone').fill(`090-${digits.slice(0, 4)}-${digits.slice(4)}`);
      await page.locator('form[action$="/phone"] button[type=submit]').click();
      await page.locator('input[autocomplete="one-time-code"]').waitFor();
      expect(smsTo()).toHaveLength(1);
      const oldCode = /\d{6}/.exec(smsTo()[0]?.text ?? '')?.[0] as string;
      await expireCodesTo(e164);

      await page.locator('input[autocomplete="one-time-code"]').fill(oldCode);
      await page.getByRole('button', { name: t.go }).click();
      await page.getByRole('alert').waitFor();
      const masked = `•••-••••-${digits.slice(4)}`;
      expect((await page.getByRole('alert').textContent())?.trim()).toBe(t.expired(masked));
      expect(page.url()).toMatch(/\/sms-code$/);
      await screenshot(page, `${locale}-recovery-3-sms-code-expired`);
      expect(await axeViolations(page)).toEqual([]);

      await page.getByRole('button', { name: t.resend }).click();
      await page.getByRole('status').waitFor();
      expect((await page.getByRole('status').textContent())?.trim()).toBe(t.sent);
      expect(smsTo()).toHaveLength(2);
      const newCode = /\d{6}/.exec(smsTo()[0]?.text ?? '')?.[0] as string;
      await page.locator('input[autocomplete="one-time-code"]').fill(newCode);
      await page.getByRole('button', { name: t.go }).click();
      await page.waitForURL((u) => u.href.startsWith(redirectUri));
      const tokens = await oidc.authorizationCodeGrant(client, new URL(page.url()), { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
      expect(tokens.claims()?.phone_number).toBe(e164);
      await context.close();
    });
  }

  for (const locale of ['en', 'ja'] as const) {
    it(`signs out from a logout page left stale by a second tab, without blaming the app (${locale})`, async () => {
      const t = locale === 'en'
        ? { signOut: 'Sign out', signedOut: 'Signed out', error: 'Something went wrong' }
        : { signOut: 'ログアウト', signedOut: 'ログアウトしました', error: '問題が発生しました' };
      const context = await contextFor(locale);
      const first = await context.newPage();
      await signUpOnAccountPage(first, { issuer, sink }, uniqueEmail(`logout-${locale}`));
      const endSession = `${issuer}/session/end?${new URLSearchParams({ client_id: clientId, post_logout_redirect_uri: `${rp.origin}/bye`, state: 'st-1', ui_locales: locale })}`;
      await first.goto(endSession);
      await first.getByRole('button', { name: t.signOut, exact: true }).waitFor();
      const second = await context.newPage();
      await second.goto(endSession);
      await second.getByRole('button', { name: t.signOut, exact: true }).waitFor();

      // The first tab's form is stale now: it gets a fresh confirmation, not an error.
      await first.getByRole('button', { name: t.signOut, exact: true }).click();
      await first.waitForURL((u) => u.pathname === '/session/end' && u.searchParams.get('client_id') === clientId);
      await first.getByRole('button', { name: t.signOut, exact: true }).waitFor();
      expect(await first.textContent('main')).not.toContain(t.error);
      expect(await first.textContent('main')).not.toContain('xsrf');
      expect(await first.textContent('main')).toContain('Example Shop');
      await screenshot(first, `${locale}-recovery-4-logout-fresh-form`);
      expect(await axeViolations(first)).toEqual([]);
      await first.getByRole('button', { name: t.signOut, exact: true }).click();
      await first.waitForURL((u) => u.href.startsWith(`${rp.origin}/bye`));
      expect(new URL(first.url()).searchParams.get('state')).toBe('st-1');

      // The second tab's form is stale too, and its session has already ended: it says so, without an error.
      await second.getByRole('button', { name: t.signOut, exact: true }).click();
      await second.getByRole('heading', { level: 1, name: t.signedOut }).waitFor();
      expect(await second.textContent('main')).not.toContain(t.error);
      await screenshot(second, `${locale}-recovery-4b-logout-second-tab`);
      expect(await axeViolations(second)).toEqual([]);
      await context.close();
    });

    it(`keeps the typed device code when a second tab made the device form stale (${locale})`, async () => {
      const started = await fetch(`${issuer}/device/auth`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ client_id: deviceClientId, scope: 'openid' }) });
      const device = await started.json() as { user_code: string };
      const context = await contextFor(locale);
      const first = await context.newPage();
      await first.goto(`${issuer}/device?lang=${locale}`);
      await first.locator('#user_code').waitFor();
      const second = await context.newPage();
      await second.goto(`${issuer}/device`);
      await second.locator('#user_code').waitFor();

      await first.locator('#user_code').fill(device.user_code);
      const answered = first.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/device');
      await first.locator('form button[type=submit]').click();
      expect((await answered).status()).toBe(200);
      await first.waitForLoadState();
      expect(await first.locator('[role=alert]').count()).toBe(0);
      expect(await first.locator('#user_code').inputValue()).toBe(device.user_code);
      await screenshot(first, `${locale}-recovery-5-device-fresh-form`);
      expect(await axeViolations(first)).toEqual([]);
      await first.locator('form button[type=submit]').click();
      await first.locator('[data-user-code]').waitFor();
      expect(await first.locator('[data-user-code]').textContent()).toBe(device.user_code);
      await context.close();
    });
  }

  for (const locale of ['en', 'ja'] as const) {
    it(`switches language in place after a POST and on the logout page (${locale})`, async () => {
      const other = locale === 'en' ? 'ja' : 'en';
      const switchTo = other === 'ja' ? '日本語' : 'English';
      const heading = { en: { login: 'Sign in', logout: 'Sign out?', lead: 'Example Shop asks to sign you out of Tsunagi.' }, ja: { login: 'ログイン', logout: /^ログアウトしますか[?？]$/, lead: 'Example Shop が Tsunagi からのログアウトを求めています。' } };
      const context = await contextFor(locale);
      const page = await context.newPage();
      const req = await authorizationRequest(client, redirectUri, { ui_locales: locale });
      await page.goto(req.url.href);
      await page.getByLabel(text[locale].email).fill('not-an-email');
      await page.getByRole('button', { name: text[locale].send }).click();
      await page.getByRole('alert').waitFor();
      const uid = /\/interaction\/([^/]+)\/email$/.exec(new URL(page.url()).pathname)?.[1];
      expect(uid).toBeTruthy();

      // The page answered a POST: its language link reloads the same step, in the other language.
      const switched = page.waitForResponse((r) => new URL(r.url()).searchParams.get('lang') === other);
      await page.getByRole('link', { name: switchTo }).click();
      expect((await switched).status()).toBe(200);
      await page.getByRole('heading', { level: 1, name: heading[other].login }).waitFor();
      expect(await page.getAttribute('html', 'lang')).toBe(other);
      expect(new URL(page.url()).pathname).toBe(`/interaction/${uid}`);
      await screenshot(page, `${locale}-recovery-6-language-after-post`);
      expect(await axeViolations(page)).toEqual([]);

      // The logout page keeps its query (and so the client's name) and switches on the first click.
      await signUpOnAccountPage(page, { issuer, sink }, uniqueEmail(`lang-${locale}`));
      const endSession = `${issuer}/session/end?${new URLSearchParams({ client_id: clientId, post_logout_redirect_uri: `${rp.origin}/bye`, ui_locales: locale })}`;
      await page.goto(endSession);
      await page.getByRole('heading', { level: 1, name: heading[locale].logout }).waitFor();
      await page.getByRole('link', { name: switchTo }).click();
      await page.waitForURL((u) => u.searchParams.get('lang') === other);
      await page.getByRole('heading', { level: 1, name: heading[other].logout }).waitFor();
      expect(await page.getAttribute('html', 'lang')).toBe(other);
      expect(new URL(page.url()).searchParams.get('client_id')).toBe(clientId);
      expect(await page.textContent('main')).toContain(heading[other].lead);
      await screenshot(page, `${locale}-recovery-7-language-logout`);
      expect(await axeViolations(page)).toEqual([]);
      await context.close();
    });
  }

  for (const locale of ['en', 'ja'] as const) {
    it(`leads on after too many wrong codes, says a new code was sent, and keeps the address going back (${locale})`, async () => {
      const t = locale === 'en'
        ? { oneLeft: 'That code is not right. 1 try left.', tooMany: 'Too many wrong tries for this code. We can send a new one to ', wait: /^You can ask for another code in \d+ seconds?\.$/, different: 'Use a different email' }
        : { oneLeft: '確認コードが正しくありません。あと 1 回試せます。', tooMany: 'このコードの入力ミスが多すぎます。', wait: /^\d+ 秒後に別のコードを送信できます。$/, different: '別のメールアドレスを使う' };
      const context = await contextFor(locale);
      const page = await context.newPage();
      const email = uniqueEmail(`attempts-${locale}`);
      const code = await startEmailSignIn(page, locale, email);
      const wrong = code === '000000' ? '111111' : '000000';
      for (let tries = 1; tries <= 4; tries += 1) {
        await page.locator('input[autocomplete="one-time-code"]').fill(wrong);
        await page.getByRole('button', { name: text[locale].go }).click();
        await page.getByRole('alert').waitFor();
      }
      // "1 try left", not "1 tries left".
      expect((await page.getByRole('alert').textContent())?.trim()).toBe(t.oneLeft);
      await page.locator('input[autocomplete="one-time-code"]').fill(wrong);
      await page.getByRole('button', { name: text[locale].go }).click();
      await page.getByText(t.tooMany).waitFor();
      expect(await page.textContent('[role=alert]')).toContain(email);
      // The way on is the page's primary button, not a small link.
      expect(await page.getByRole('button', { name: text[locale].resend }).getAttribute('class')).toBe('primary');
      expect(await page.locator('input[autocomplete="one-time-code"]').count()).toBe(0);
      await screenshot(page, `${locale}-recovery-8-too-many-attempts`);
      expect(await axeViolations(page)).toEqual([]);

      await page.getByRole('button', { name: text[locale].resend }).click();
      await page.getByRole('status').waitFor();
      expect((await page.getByRole('status').textContent())?.trim()).toBe(text[locale].sent);
      // A short cooldown before yet another code, said in words.
      expect(await page.getByRole('button', { name: text[locale].resend }).isDisabled()).toBe(true);
      expect((await page.locator('#resend-wait').textContent())?.trim()).toMatch(t.wait);
      await screenshot(page, `${locale}-recovery-9-code-resent-cooldown`);
      expect(await axeViolations(page)).toEqual([]);
      await page.locator('input[autocomplete="one-time-code"]').fill(codeFrom(await sink.nextMailTo(email)));
      await page.getByRole('button', { name: text[locale].go }).click();
      await page.getByRole('button', { name: text[locale].create }).waitFor();

      // The browser's Back button comes to the first step with the address still in the field.
      await page.goBack();
      await page.locator('#email').waitFor();
      expect(await page.locator('#email').inputValue()).toBe(email);
      await page.goForward();
      await page.getByRole('button', { name: text[locale].create }).waitFor();
      // So does "Use a different email" on the signup question.
      await page.getByRole('button', { name: t.different }).click();
      await page.locator('#email').waitFor();
      expect(await page.locator('#email').inputValue()).toBe(email);
      await screenshot(page, `${locale}-recovery-10-signup-different-email`);
      expect(await axeViolations(page)).toEqual([]);
      await context.close();
    });
  }
});
