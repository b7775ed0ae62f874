import fs from 'node:fs';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { RunningServer } from '../../src/server.js';
import { DEVICE_CODE_GRANT } from '../../src/oidc/device-flow.js';
import { FakeApple } from '../fakes/apple.js';
import { SmtpSink, codeFrom } from '../fakes/smtp-sink.js';
import { parseEmailAddress, type EmailAddress } from '../../src/accounts/email-address.js';
import { withTransaction } from '../../src/db/database.js';
import { listGrantsOfAccount } from '../../src/oidc/adapter/grant-lookup.js';
import { describeBackends, uniqueEmail } from '../support/harness.js';
import { signUpOnAccountPage, startStage, type Stage } from './support.js';
import { screenshot } from '../support/chromium.js';
import { axeViolations } from '../support/axe.js';

const REDIRECT = 'http://127.0.0.1:9/cb';
// LINE's in-app browser on an iPhone (not a LIFF app), and the size of an iPhone 14 screen.
const LINE_UA = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/13.21.0';
const PHONE = { width: 390, height: 844 };
const LOCALES = ['en', 'ja'] as const;
type Locale = typeof LOCALES[number];

// Issue 12, items 6-12: the screens on a phone and in LINE's in-app browser, in English and
// Japanese, with axe-core on each. Screenshots: test-output/screenshots/phone-*.png.
describe(`screens on a phone, in LINE and for screen readers (${describeBackends()})`, () => {
  let stage: Stage;
  let server: RunningServer;
  let sink: SmtpSink;
  let apple: FakeApple;
  let browser: Browser;
  let issuer: string;
  let shopId: string;
  let miniAppId: string;

  beforeAll(async () => {
    stage = await startStage({ google: true, apple: true, relyingParty: false, chromium: true });
    ({ server, sink, apple, browser, issuer } = stage);
    ({ clientId: shopId } = await stage.addClient({
      client_name: 'Demo shop', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none',
    }));
    ({ clientId: miniAppId } = await stage.addClient({
      client_name: 'Demo mini app', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', first_party: true,
      grant_types: ['authorization_code', 'refresh_token', DEVICE_CODE_GRANT],
    }));
  });
  afterAll(() => stage?.close());

  const authUrl = (clientId: string, locale: Locale, scope = 'openid email') => `${issuer}/auth?${new URLSearchParams({
    client_id: clientId, redirect_uri: REDIRECT, response_type: 'code', scope, state: 's', nonce: 'n', ui_locales: locale,
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256',
  }).toString()}`;

  async function phoneContext(locale: Locale, userAgent?: string): Promise<BrowserContext> {
    const context = await browser.newContext({ viewport: PHONE, locale: locale === 'ja' ? 'ja-JP' : 'en-US', ...(userAgent ? { userAgent } : {}) });
    // Loopback only: nothing leaves the machine.
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (url.href.startsWith(REDIRECT)) return route.fulfill({ status: 200, contentType: 'text/plain', body: 'back at the client' });
      return url.hostname === '127.0.0.1' ? route.continue() : route.abort();
    });
    return context;
  }

  /** Visible links, buttons, disclosures and fields smaller than 24×24 px (WCAG 2.2 2.5.8), as "text: w×h". */
  async function smallTargets(page: Page): Promise<string[]> {
    const found: string[] = [];
    for (const target of await page.locator('main a, main button, main summary, main input:not([type=hidden]), footer a').all()) {
      const box = await target.boundingBox();
      if (!box || !(await target.isVisible())) continue;
      if (box.height < 24 || box.width < 24) found.push(`${(await target.textContent())?.trim() || await target.getAttribute('id')}: ${Math.round(box.width)}×${Math.round(box.height)}`);
    }
    return found;
  }

  /** Font size and rendered size of a form field. */
  async function fieldLook(page: Page, selector: string): Promise<{ fontSize: number; width: number; height: number }> {
    const box = await page.locator(selector).boundingBox();
    const fontSize = await page.locator(selector).evaluate((e) => (globalThis as unknown as { getComputedStyle(e: unknown): { fontSize: string } }).getComputedStyle(e).fontSize);
    return { fontSize: parseFloat(fontSize), width: Math.round(box?.width ?? 0), height: Math.round(box?.height ?? 0) };
  }

  /** An account with a verified email address and phone number, made directly in the store. */
  async function existingAccount(email: string, phone: string): Promise<string> {
    const { accounts, db } = server.services;
    return withTransaction(db.pool, async (tx) => {
      const account = await accounts.createAccountWithVerifiedEmail(tx, parseEmailAddress(email) as EmailAddress);
      await accounts.addVerifiedPhone(tx, account.id, phone);
      return account.id;
    });
  }
  const randomDigits = (n: number) => Array.from({ length: n }, () => Math.floor(Math.random() * 10)).join('');

  /** The element's bottom edge is within the first screen (no scrolling needed to see it). */
  async function aboveTheFold(page: Page, selector: string): Promise<boolean> {
    const box = await page.locator(selector).first().boundingBox();
    if (!box) throw new Error(`${selector} is not visible`);
    return box.y + box.height <= PHONE.height;
  }

  describe('6. the login page in LINE', () => {
    for (const locale of LOCALES) {
      it(`says in one line that Google does not work in LINE, with the rest above the fold (${locale})`, async () => {
        const context = await phoneContext(locale, LINE_UA);
        const page = await context.newPage();
        await page.goto(authUrl(shopId, locale));
        await page.locator('[data-in-app-browser="line"]').waitFor();
        expect(await page.locator('button.upstream-google').count()).toBe(0);
        const note = (await page.locator('.in-app-note').textContent())?.trim();
        expect(note).toBe(locale === 'en' ? 'Google sign-in doesn\'t work inside LINE' : 'Google ログインは LINE 内では使えません');
        // The explanation waits behind "More"; a client that cannot pick up a sign-in finished in
        // Safari is not offered the way out of LINE at all.
        const more = page.locator('details.in-app-more');
        expect(await more.evaluate((d) => (d as unknown as { open: boolean }).open)).toBe(false);
        expect(await page.locator('details.in-app-more summary').textContent()).toBe(locale === 'en' ? 'More' : '詳しく');
        expect(await page.locator('a[data-open-external]').count()).toBe(0);
        for (const selector of ['#email', 'form[action$="/email"] button[type=submit]', 'a[href$="/phone"]', 'button.upstream-apple', '.in-app-note']) {
          expect([selector, await aboveTheFold(page, selector)]).toEqual([selector, true]);
        }
        // Chromium offers WebAuthn, so the passkey button shows: it must fit too.
        await page.locator('[data-passkey-login]').waitFor();
        expect(await aboveTheFold(page, '[data-passkey-login]')).toBe(true);
        await screenshot(page, `phone-6-line-login-${locale}`);
        await page.locator('details.in-app-more summary').click();
        expect(await page.locator('details.in-app-more').textContent()).toContain(locale === 'en' ? 'Apple' : 'Apple');
        await screenshot(page, `phone-6-line-login-more-${locale}`);
        expect(await axeViolations(page)).toEqual([]);
        await context.close();
      });

      it(`offers "open in browser" to a client that signs in with a code (${locale})`, async () => {
        const context = await phoneContext(locale, LINE_UA);
        const page = await context.newPage();
        await page.goto(authUrl(miniAppId, locale));
        await page.locator('details.in-app-more summary').click();
        const external = page.locator('a[data-open-external]');
        await external.waitFor();
        expect(new URL(await external.getAttribute('href') as string).searchParams.get('openExternalBrowser')).toBe('1');
        expect(await aboveTheFold(page, 'button.upstream-apple')).toBe(true);
        await screenshot(page, `phone-6-line-login-device-client-${locale}`);
        expect(await axeViolations(page)).toEqual([]);
        await context.close();
      });
    }
  });

  describe('7. fields and text links on a phone', () => {
    for (const locale of LOCALES) {
      it(`styles the phone field like the email field and makes every target at least 24 px (${locale})`, async () => {
        const context = await phoneContext(locale, LINE_UA);
        const page = await context.newPage();
        await page.goto(authUrl(shopId, locale));
        await page.locator('#email').waitFor();
        await page.locator('details.in-app-more summary').click();
        expect(await smallTargets(page)).toEqual([]);
        const emailField = await fieldLook(page, '#email');
        await page.locator('a[href$="/phone"]').click();
        await page.locator('#phone').waitFor();
        // Measured once the page's stylesheet has loaded (the element can exist before it applies).
        await page.waitForLoadState('load');
        const phoneField = await fieldLook(page, '#phone');
        // 16 px or more: iOS does not zoom the page when the field gets focus.
        expect(phoneField.fontSize).toBeGreaterThanOrEqual(16);
        expect(phoneField).toEqual(emailField);
        expect(await smallTargets(page)).toEqual([]);
        await screenshot(page, `phone-7-phone-field-${locale}`);
        expect(await axeViolations(page)).toEqual([]);
        await context.close();
      });
    }
  });

  describe('8. the link offer', () => {
    for (const locale of LOCALES) {
      it(`leads with one primary way to confirm, the masked detail on a second line, and keeps the context on the code page (${locale})`, async () => {
        const email = uniqueEmail(`link-offer-${locale}`);
        await existingAccount(email, `+8190${randomDigits(4)}2645`);
        const context = await phoneContext(locale);
        const page = await context.newPage();
        await page.goto(authUrl(shopId, locale));
        apple.nextUser({ sub: `001.${randomDigits(12)}`, email, email_verified: 'true', is_private_email: 'false' });
        await page.locator('button.upstream-apple').click();
        await page.locator('ul.methods').waitFor();
        const primary = page.locator('ul.methods button.primary');
        expect(await primary.count()).toBe(1);
        expect(await page.locator('form[action$="/link/email"] button').getAttribute('class')).toContain('primary');
        expect(await page.locator('form[action$="/link/sms"] button').getAttribute('class')).toContain('secondary');
        // The label fits on one line; the masked address is on a line of its own.
        for (const label of await page.locator('ul.methods .method-label').all()) {
          const lines = await label.evaluate((e) => {
            const style = (globalThis as unknown as { getComputedStyle(e: unknown): { lineHeight: string } }).getComputedStyle(e);
            return Math.round((e as unknown as { getBoundingClientRect(): { height: number } }).getBoundingClientRect().height / parseFloat(style.lineHeight));
          });
          expect([await label.textContent(), lines]).toEqual([await label.textContent(), 1]);
        }
        expect(await page.locator('form[action$="/link/email"] .method-detail').textContent()).toContain('•••@');
        expect(await page.locator('form[action$="/link/sms"] .method-detail').textContent()).toContain('2645');
        await screenshot(page, `phone-8-link-offer-${locale}`);
        expect(await axeViolations(page)).toEqual([]);

        await primary.click();
        await page.locator('input[autocomplete="one-time-code"]').waitFor();
        expect((await page.locator('h1').textContent())?.trim()).toBe(locale === 'en' ? 'Confirm it\'s you to link Apple' : 'Apple を連携するための本人確認');
        expect(await page.title()).toContain('Apple');
        await screenshot(page, `phone-8-link-code-${locale}`);
        expect(await axeViolations(page)).toEqual([]);
        await context.close();
      });
    }
  });

  describe('9. the account page', () => {
    for (const locale of LOCALES) {
      it(`titles the add-phone screen, shows the number as typed, apps' access in words and times in the reader's zone (${locale})`, async () => {
        const context = await phoneContext(locale);
        const page = await context.newPage();
        await signUpOnAccountPage(page, { issuer, sink }, uniqueEmail(`account-words-${locale}`));

        await page.goto(`${issuer}/account/phones/new`);
        const addPhone = locale === 'en' ? 'Add a phone number' : '電話番号を追加';
        expect((await page.locator('h1').textContent())?.trim()).toBe(addPhone);
        expect(await page.title()).toContain(addPhone);
        const national = `090-${randomDigits(4)}-${randomDigits(4)}`;
        await page.locator('#phone').fill(national);
        await screenshot(page, `phone-9-add-phone-${locale}`);
        expect(await axeViolations(page)).toEqual([]);
        await page.locator('form[action="/account/phones"] button[type=submit]').click();
        await page.locator('input[autocomplete="one-time-code"]').waitFor();
        const e164 = `+81${national.replace(/-/g, '').slice(1)}`;
        const sms = server.services.outbox?.list().find((m) => m.channel === 'sms' && m.to === e164);
        await page.locator('input[autocomplete="one-time-code"]').fill(/\d{6}/.exec(sms?.text ?? '')?.[0] ?? '');
        await page.locator('form[action="/account/phones/verify"] button[type=submit]').click();
        await page.waitForURL(/\/account\?notice=phone_added/);

        // An application with access: the shop, after consent to email, profile and phone.
        await page.goto(authUrl(shopId, locale, 'openid email profile phone'));
        await page.locator('form[action$="/consent"] button[type=submit]').click();
        await page.waitForURL((u) => u.href.startsWith(REDIRECT));
        await page.goto(`${issuer}/account`);
        const phones = await page.locator('section[aria-labelledby="phones-h"] .item-main').allTextContents();
        expect(phones).toEqual([national]);
        const apps = (await page.locator('section[aria-labelledby="apps-h"] .detail').allTextContents()).join(' ');
        expect(apps).toContain(locale === 'en' ? 'Email address, Name and Phone number' : 'メールアドレス、名前、電話番号');
        expect(apps).not.toContain('openid');
        // Event times: Japan time for Japanese readers, UTC otherwise, and named.
        const events = await page.locator('.events .detail').allTextContents();
        expect(events.length).toBeGreaterThan(0);
        for (const at of events) expect(at).toContain(locale === 'en' ? 'UTC' : 'JST');
        await screenshot(page, `phone-9-account-${locale}`);
        expect(await axeViolations(page)).toEqual([]);
        await context.close();
      });
    }
  });

  describe('10. consent', () => {
    for (const locale of LOCALES) {
      it(`shows who is signed in, lets someone else sign in for the same authorization, and says Cancel (${locale})`, async () => {
        const context = await phoneContext(locale);
        const page = await context.newPage();
        const first = uniqueEmail(`consent-first-${locale}`);
        await signUpOnAccountPage(page, { issuer, sink }, first);
        await page.goto(authUrl(shopId, locale, 'openid email profile'));
        await page.locator('form[action$="/consent"] button[type=submit]').waitFor();
        expect(await page.locator('.signed-in-as strong').textContent()).toBe(first);
        expect((await page.locator('form[action$="/abort"] button').textContent())?.trim()).toBe(locale === 'en' ? 'Cancel' : 'キャンセル');
        expect(await smallTargets(page)).toEqual([]);
        await screenshot(page, `phone-10-consent-${locale}`);
        expect(await axeViolations(page)).toEqual([]);

        // "Not you?": a new sign-in for this same authorization, then consent for that account.
        await page.locator('a.switch-account').click();
        await page.locator('#email').waitFor();
        expect(await page.inputValue('#email')).toBe('');
        const second = uniqueEmail(`consent-second-${locale}`);
        await page.locator('#email').fill(second);
        await page.locator('form[action$="/email"] button[type=submit]').click();
        await page.locator('input[autocomplete="one-time-code"]').fill(codeFrom(await sink.nextMailTo(second)));
        await page.locator('form[action$="/code"] button[type=submit]').click();
        await page.locator('form[action$="/signup"] button[type=submit]').click();
        await page.locator('a.button.secondary').click();
        await page.locator('form[action$="/consent"] button[type=submit]').waitFor();
        expect(await page.locator('.signed-in-as strong').textContent()).toBe(second);
        await page.locator('form[action$="/consent"] button[type=submit]').click();
        await page.waitForURL((u) => u.href.startsWith(REDIRECT));
        const back = new URL(page.url());
        expect(back.searchParams.get('state')).toBe('s');
        expect(back.searchParams.get('code')).toEqual(expect.any(String));
        // The grant went to the account that signed in second, not to the first one.
        const grantsOf = async (email: string) => {
          const account = await server.services.accounts.findAccountByVerifiedEmail(parseEmailAddress(email) as EmailAddress);
          return (await listGrantsOfAccount(server.services.db.pool, account?.id as string)).map((g) => g.clientId);
        };
        expect(await grantsOf(second)).toContain(shopId);
        expect(await grantsOf(first)).not.toContain(shopId);
        await context.close();
      });
    }
  });

  describe('11. wording', () => {
    it('uses full-width brackets and question marks throughout the Japanese catalogue', () => {
      const japanese = Object.entries(JSON.parse(fs.readFileSync('views/locales/ja.json', 'utf8')) as Record<string, string>);
      expect(japanese.filter(([, text]) => /[()?]/.test(text)).map(([key]) => key)).toEqual([]);
    });

    it('says "Demo shop にログイン" and uses Apple\'s own 「メールを非公開」 for a relay address (ja)', async () => {
      const context = await phoneContext('ja');
      const page = await context.newPage();
      await page.goto(authUrl(shopId, 'ja'));
      expect((await page.locator('p.lead').textContent())?.trim()).toBe('Demo shop にログイン');
      await screenshot(page, 'phone-11-login-ja');
      apple.nextUser({ sub: `001.${randomDigits(12)}`, email: `${randomDigits(10)}@privaterelay.appleid.com`, email_verified: 'true', is_private_email: 'true' });
      await page.locator('button.upstream-apple').click();
      await page.locator('form[action$="/upstream-signup"]').waitFor();
      const main = await page.textContent('main');
      expect(main).toContain('「メールを非公開」');
      expect(main).not.toContain('プライベートリレー');
      await screenshot(page, 'phone-11-apple-relay-signup-ja');
      expect(await axeViolations(page)).toEqual([]);
      await context.close();
    });

    for (const locale of LOCALES) {
      it(`explains passkeys without jargon (${locale})`, async () => {
        const context = await phoneContext(locale);
        const page = await context.newPage();
        await signUpOnAccountPage(page, { issuer, sink }, uniqueEmail(`passkey-words-${locale}`));
        const main = await page.textContent('main');
        expect(main).toContain(locale === 'en' ? 'A fake website cannot use your passkey' : '偽のサイトにだまされても、パスキーは使われません');
        expect(main).not.toMatch(/phish|フィッシング/);
        await screenshot(page, `phone-11-account-passkeys-${locale}`);
        await context.close();
      });
    }
  });

  describe('12. masked values for screen readers', () => {
    for (const locale of LOCALES) {
      it(`gives masked addresses and numbers a spoken form instead of bullets (${locale})`, async () => {
        const email = uniqueEmail(`masked-${locale}`);
        await existingAccount(email, `+8190${randomDigits(4)}2645`);
        const context = await phoneContext(locale);
        const page = await context.newPage();
        await page.goto(authUrl(shopId, locale));
        apple.nextUser({ sub: `001.${randomDigits(12)}`, email, email_verified: 'true', is_private_email: 'false' });
        await page.locator('button.upstream-apple').click();
        await page.locator('ul.methods').waitFor();
        const spokenEmail = locale === 'en' ? 'an email address that starts with m at example.test' : 'm で始まる example.test のメールアドレス';
        const spokenPhone = locale === 'en' ? 'a phone number ending in 2 6 4 5' : '末尾が 2 6 4 5 の電話番号';
        // What assistive technology gets (the accessibility tree), and what the eye still sees.
        const methods = await page.locator('ul.methods').ariaSnapshot();
        expect(methods).not.toContain('•');
        expect(methods).toContain(spokenEmail);
        expect(methods).toContain(spokenPhone);
        expect(await page.locator('form[action$="/link/sms"] .method-detail [aria-hidden=true]').textContent()).toBe('•••-••••-2645');
        await screenshot(page, `phone-12-link-offer-${locale}`);
        expect(await axeViolations(page)).toEqual([]);

        await page.locator('form[action$="/link/sms"] button').click();
        await page.locator('input[autocomplete="one-time-code"]').waitFor();
        const lead = await page.locator('p.lead').ariaSnapshot();
        expect(lead).not.toContain('•');
        expect(lead).toContain(spokenPhone);
        expect(await page.locator('p.lead').innerText()).toContain('•••-••••-2645');
        await screenshot(page, `phone-12-link-sms-code-${locale}`);
        expect(await axeViolations(page)).toEqual([]);
        await context.close();
      });
    }
  });
});
