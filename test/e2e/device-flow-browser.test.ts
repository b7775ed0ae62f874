import type { Browser } from 'playwright-core';
import { DEVICE_CODE_GRANT } from '../../src/oidc/device-flow.js';
import { FakeGoogle } from '../fakes/google.js';
import { describeBackends } from '../support/harness.js';
import { startStage, type Stage } from './support.js';
import { screenshot } from '../support/chromium.js';
import { axeViolations } from '../support/axe.js';

const REDIRECT = 'http://127.0.0.1:9/cb';
const LIFF_UA = 'Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/13.14.0 LIFF';

// The in-app browser guidance and the device pages in headless Chromium, in English and Japanese,
// with screenshots in test-output/screenshots/device-*.png and in-app-*.png. Only loopback is used.
describe(`device pages and in-app browser guidance in Chromium (${describeBackends()})`, () => {
  let stage: Stage;
  let google: FakeGoogle;
  let browser: Browser;
  let issuer: string;
  let clientId: string;

  beforeAll(async () => {
    stage = await startStage({ google: true, relyingParty: false, chromium: true });
    ({ google, browser, issuer } = stage);
    ({ clientId } = await stage.addClient({
      client_name: 'Example Shop mini app', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', first_party: true,
      grant_types: ['authorization_code', 'refresh_token', DEVICE_CODE_GRANT],
    }));
  });
  afterAll(() => stage?.close());

  const shot = screenshot;
  const authUrl = () => `${issuer}/auth?${new URLSearchParams({
    client_id: clientId, redirect_uri: REDIRECT, response_type: 'code', scope: 'openid', state: 's', nonce: 'n',
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256',
  }).toString()}`;

  for (const locale of ['en', 'ja'] as const) {
    it(`shows the guidance instead of Google in LINE, and the same after a POST (${locale})`, async () => {
      const context = await browser.newContext({ viewport: { width: 390, height: 780 }, locale: locale === 'ja' ? 'ja-JP' : 'en-US', userAgent: LIFF_UA });
      await context.route('**/*', (route) => (new URL(route.request().url()).hostname === '127.0.0.1' ? route.continue() : route.abort()));
      const page = await context.newPage();
      await page.goto(authUrl());
      const guidance = page.locator('[data-in-app-browser="line"]');
      await guidance.waitFor();
      expect(await page.locator('button.upstream-google').count()).toBe(0);
      expect(await page.locator('a[data-open-external]').getAttribute('href')).toContain('openExternalBrowser=1');
      await shot(page, `in-app-login-${locale}`);
      expect(await axeViolations(page)).toEqual([]);

      // A stale page (or a hand-made form) that still posts to Google gets the guidance page.
      const before = google.authorizeRequests.length;
      await page.evaluate(() => {
        type Form = { action: string; submit(): void };
        const doc = (globalThis as unknown as { document: { querySelector(selector: string): Form } }).document;
        const form = doc.querySelector('form[action$="/email"]');
        form.action = form.action.replace(/\/email$/, '/upstream/google');
        form.submit();
      });
      await page.locator('h1').filter({ hasText: 'Google' }).waitFor();
      expect(new URL(page.url()).pathname).toMatch(/\/upstream\/google$/);
      expect(google.authorizeRequests.length).toBe(before);
      await shot(page, `in-app-guidance-${locale}`);
      expect(await axeViolations(page)).toEqual([]);
      await context.close();
    });

    it(`walks the device pages: code input, wrong code, confirmation, cancel (${locale})`, async () => {
      const started = await fetch(`${issuer}/device/auth`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ client_id: clientId, scope: 'openid' }) });
      const device = await started.json() as { user_code: string; verification_uri: string; device_code: string };
      const context = await browser.newContext({ viewport: { width: 390, height: 780 }, locale: locale === 'ja' ? 'ja-JP' : 'en-US' });
      await context.route('**/*', (route) => (new URL(route.request().url()).hostname === '127.0.0.1' ? route.continue() : route.abort()));
      const page = await context.newPage();
      await page.goto(device.verification_uri);
      await shot(page, `device-code-${locale}`);
      expect(await axeViolations(page)).toEqual([]);
      await page.locator('#user_code').fill('BCDF-GHJK');
      await page.locator('button[type=submit]').click();
      await page.locator('.alert[role=alert]').waitFor();
      await shot(page, `device-code-wrong-${locale}`);
      expect(await axeViolations(page)).toEqual([]);
      await page.locator('#user_code').fill(device.user_code.toLowerCase());
      await page.locator('button[type=submit]').click();
      await page.locator('[data-user-code]').waitFor();
      expect(await page.locator('[data-user-code]').textContent()).toBe(device.user_code);
      await shot(page, `device-confirm-${locale}`);
      expect(await axeViolations(page)).toEqual([]);
      await page.locator('button[name=abort]').click();
      await page.locator('.alert[role=alert]').waitFor();
      await shot(page, `device-cancelled-${locale}`);
      expect(await axeViolations(page)).toEqual([]);
      const poll = await fetch(`${issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: DEVICE_CODE_GRANT, device_code: device.device_code, client_id: clientId }) });
      expect(((await poll.json()) as { error: string }).error).toBe('access_denied');
      await context.close();
    });

    it(`signs in with Google after the code and shows the success page (${locale})`, async () => {
      const started = await fetch(`${issuer}/device/auth`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ client_id: clientId, scope: 'openid email' }) });
      const device = await started.json() as { verification_uri_complete: string; device_code: string };
      const sub = `${Date.now()}${Math.floor(Math.random() * 1e6)}`;
      google.nextUser({ sub, email: `shot.${sub}@gmail.com`, email_verified: true, name: 'Shot Person' });
      const context = await browser.newContext({ viewport: { width: 390, height: 780 }, locale: locale === 'ja' ? 'ja-JP' : 'en-US' });
      await context.route('**/*', (route) => (new URL(route.request().url()).hostname === '127.0.0.1' ? route.continue() : route.abort()));
      const page = await context.newPage();
      await page.goto(device.verification_uri_complete);
      await page.locator('button[name=confirm]').click();
      await page.locator('button.upstream-google').click();
      await page.locator('form[action$="/upstream-signup"] button[type=submit]').click();
      const success = page.locator('[data-device-success]');
      const offer = page.locator('a.button.secondary');
      await Promise.race([success.waitFor(), offer.waitFor()]);
      if (!(await success.isVisible())) await offer.click();
      await success.waitFor();
      await shot(page, `device-success-${locale}`);
      expect(await axeViolations(page)).toEqual([]);
      const poll = await fetch(`${issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: DEVICE_CODE_GRANT, device_code: device.device_code, client_id: clientId }) });
      expect(poll.status).toBe(200);
      expect(((await poll.json()) as { id_token?: string }).id_token).toEqual(expect.any(String));
      await context.close();
    });
  }
});
