import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium, type Browser } from 'playwright-core';
import { FakeGoogle } from '../../../test/fakes/google.js';
import { FakeLinePlatform } from '../../../test/fakes/line.js';
import { SmtpSink } from '../../../test/fakes/smtp-sink.js';
import { describeBackends, freePort, startTestServer } from '../../../test/support/harness.js';
import type { RunningLinkApp } from '../src/main.js';
import { CHANNEL_ID, exampleConfig, startExample, type World } from './support.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = path.resolve('test-output/screenshots');
const LIFF_UA = 'Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/13.14.0 LIFF';
const SAFARI_UA = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1';

// Google inside LINE: the LIFF page (LINE's user agent, stub `liff`) starts the device grant, "opens
// the external browser" (liff.openWindow, recorded by the stub; a second Chromium context with a
// normal user agent plays the phone's browser), the person signs in there with Google (emulator),
// and the LIFF page's polling gets the ID token (with the backend's nonce) and links.
describe(`LIFF page: Google through the device flow (${describeBackends()})`, () => {
  let world: World;
  let google: FakeGoogle;
  let app: RunningLinkApp;
  let browser: Browser;

  beforeAll(async () => {
    fs.mkdirSync(SHOTS, { recursive: true });
    const sink = new SmtpSink();
    const line = new FakeLinePlatform();
    await line.start();
    google = await new FakeGoogle().start();
    const tsunagi = await startTestServer({ SMTP_URL: await sink.start(), ...google.env() });
    world = {
      tsunagi, sink, line, notifySecret: randomBytes(24).toString('base64url'),
      async close() { await tsunagi.close(); await sink.close(); await line.close(); },
    };
    const port = await freePort();
    const origin = `http://127.0.0.1:${port}`;
    const added = await tsunagi.services.clients.add({
      client_name: 'Example Shop mini app', redirect_uris: [`${origin}/`], token_endpoint_auth_method: 'none', first_party: true, require_auth_time: true,
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'], allowed_cors_origins: [origin],
    });
    app = await startExample(exampleConfig(world, added.client_id as string, { PORT: String(port), LIFF_ID: '1657000001-AbCdEfGh' }));
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'] });
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await world?.close();
    await google?.close();
  });

  it('links a LINE user to the account of a Google sign-in made in the external browser', async () => {
    const userId = FakeLinePlatform.newUserId();
    const token = world.line.issueAccessToken({ userId, channelId: CHANNEL_ID });

    const liffContext = await browser.newContext({ viewport: { width: 390, height: 780 }, userAgent: LIFF_UA });
    await liffContext.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (url.hostname === '127.0.0.1') return route.continue();
      if (url.hostname === 'static.line-scdn.net') return route.fulfill({ status: 200, contentType: 'text/javascript', body: '/* LIFF SDK stubbed */' });
      return route.abort();
    });
    await liffContext.addInitScript(({ accessToken }) => {
      const w = globalThis as unknown as { liff: unknown; openedWindows: Array<{ url: string; external: boolean }> };
      w.openedWindows = [];
      w.liff = {
        init: async () => undefined,
        isLoggedIn: () => true,
        isInClient: () => true,
        getAccessToken: () => accessToken,
        login: () => { throw new Error('not expected'); },
        openWindow: (params: { url: string; external: boolean }) => { w.openedWindows.push(params); },
      };
    }, { accessToken: token });
    const liffPage = await liffContext.newPage();
    await liffPage.goto(`${app.url}/`);
    await liffPage.getByRole('button', { name: 'Use Google? Sign in with a code' }).click();
    await liffPage.waitForFunction(() => (globalThis as unknown as { openedWindows: unknown[] }).openedWindows.length === 1);
    const opened = await liffPage.evaluate(() => (globalThis as unknown as { openedWindows: Array<{ url: string; external: boolean }> }).openedWindows[0]);
    expect(opened?.external).toBe(true);
    const verification = new URL(opened?.url as string);
    expect(verification.origin + verification.pathname).toBe(`${world.tsunagi.services.config.issuer}/device`);
    const shownCode = await liffPage.locator('#user-code').textContent();
    expect(verification.searchParams.get('user_code')).toBe(shownCode);
    await liffPage.screenshot({ path: path.join(SHOTS, 'line-mini-app-device-code.png'), fullPage: true });

    // The phone's own browser.
    const sub = `${Date.now()}${Math.floor(Math.random() * 1e6)}`;
    google.nextUser({ sub, email: `liff.${sub}@gmail.com`, email_verified: true, name: 'LIFF Person' });
    const external = await browser.newContext({ viewport: { width: 390, height: 780 }, userAgent: SAFARI_UA });
    await external.route('**/*', (route) => (new URL(route.request().url()).hostname === '127.0.0.1' ? route.continue() : route.abort()));
    const page = await external.newPage();
    await page.goto(verification.href);
    await page.locator('button[name=confirm]').click();
    await page.locator('button.upstream-google').click();
    await page.locator('form[action$="/upstream-signup"] button[type=submit]').click();
    const success = page.locator('[data-device-success]');
    await Promise.race([success.waitFor(), page.locator('a.button.secondary').waitFor()]);
    if (!(await success.isVisible())) await page.locator('a.button.secondary').click();
    await success.waitFor();

    await liffPage.getByText('Linked! You will get updates on LINE.').waitFor({ timeout: 20_000 });
    await liffPage.screenshot({ path: path.join(SHOTS, 'line-mini-app-device-linked.png'), fullPage: true });
    const linkedSub = await app.store.subOf(userId);
    const identity = await world.tsunagi.services.identities.findByIssuerSubject(google.issuer, sub);
    expect(linkedSub).toBe(identity?.accountId);
    await external.close();
    await liffContext.close();
  }, 60_000);
});
