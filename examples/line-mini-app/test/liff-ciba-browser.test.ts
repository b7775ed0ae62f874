import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { FakeLinePlatform } from '../../../test/fakes/line.js';
import { codeFrom } from '../../../test/fakes/smtp-sink.js';
import { createAccount, linkIn } from '../../../test/support/ciba-approval.js';
import { describeBackends, freePort, uniqueEmail } from '../../../test/support/harness.js';
import type { RunningLinkApp } from '../src/main.js';
import { CHANNEL_ID, exampleConfig, startExample, startWorld, type World } from './support.js';
import { axeViolations } from '../../../test/support/axe.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = path.resolve('test-output/screenshots');
const LIFF_ID = '1657000001-AbCdEfGh';
const CIBA_GRANT = 'urn:openid:params:grant-type:ciba';

if (!fs.existsSync(CHROMIUM)) {
  console.error(`\n\n*** Chromium not found at ${CHROMIUM}: install chromium or set CHROMIUM_PATH ***\n\n`);
}

// Method 2 in headless Chromium: the LIFF page (stub `liff`) asks for an email address and shows the
// binding message; the person opens the mailed link in their phone's browser (a second context),
// signs in to Tsunagi with an email code and approves (English) or refuses (Japanese).
describe(`LIFF page, method 2 (CIBA), and Tsunagi's approval page in Chromium (${describeBackends()})`, () => {
  let world: World;
  let app: RunningLinkApp;
  let browser: Browser;
  let exportClientId: string;

  beforeAll(async () => {
    fs.mkdirSync(SHOTS, { recursive: true });
    world = await startWorld();
    const port = await freePort();
    const origin = `http://127.0.0.1:${port}`;
    const spa = await world.tsunagi.services.clients.add({
      client_name: 'Example Shop mini app', redirect_uris: [`${origin}/`], token_endpoint_auth_method: 'none', first_party: true, allowed_cors_origins: [origin],
    });
    const backend = await world.tsunagi.services.clients.add({
      client_name: 'Example Shop mini app', grant_types: [CIBA_GRANT], response_types: [], redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic', backchannel_token_delivery_mode: 'poll',
    });
    const exporter = await world.tsunagi.services.clients.add({
      client_name: 'Example Shop mini app', grant_types: ['client_credentials'], response_types: [], redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic', scope: 'tsunagi:export',
    });
    exportClientId = exporter.client_id as string;
    app = await startExample(exampleConfig(world, spa.client_id as string, {
      PORT: String(port), LIFF_ID, TSUNAGI_CIBA_CLIENT_ID: backend.client_id as string, TSUNAGI_CIBA_CLIENT_SECRET: backend.client_secret as string,
      TSUNAGI_EXPORT_CLIENT_ID: exportClientId, TSUNAGI_EXPORT_CLIENT_SECRET: exporter.client_secret as string,
    }));
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await world?.close();
  });

  async function liffPage(lineAccessToken: string): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext({ viewport: { width: 390, height: 780 } });
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (url.hostname === '127.0.0.1') return route.continue();
      if (url.hostname === 'static.line-scdn.net') return route.fulfill({ status: 200, contentType: 'text/javascript', body: '/* LIFF SDK stubbed */' });
      return route.abort();
    });
    await context.addInitScript(({ token }) => {
      (globalThis as unknown as { liff: unknown }).liff = {
        init: async () => undefined, isLoggedIn: () => true, isInClient: () => true, getAccessToken: () => token,
        login: () => { throw new Error('not expected'); },
      };
    }, { token: lineAccessToken });
    return { context, page: await context.newPage() };
  }

  /** The phone's own browser, where the person opens the mail's link. */
  async function phoneBrowser(locale: string): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, locale, extraHTTPHeaders: { 'accept-language': locale } });
    await context.route('**/*', (route) => (new URL(route.request().url()).hostname === '127.0.0.1' ? route.continue() : route.abort()));
    return context.newPage();
  }

  const shot = (page: Page, name: string) => page.screenshot({ path: path.join(SHOTS, `line-mini-app-method2-${name}.png`), fullPage: true });

  /** Opens the link, signs in with the email code (whatever the page's language), and waits for the approval page. */
  async function signInFromLink(page: Page, link: string, email: string) {
    await page.goto(link);
    await page.locator('input[type="email"]').fill(email);
    await page.locator('form[action$="/email"] button[type="submit"]').click();
    await page.locator('input[autocomplete="one-time-code"]').fill(codeFrom(await world.sink.nextMailTo(email)));
    await page.locator('form[action$="/code"] button[type="submit"]').click();
    await page.locator('[data-binding-message]').waitFor();
  }

  it('links after the person approves in English: the page names the app and shows the same binding message', async () => {
    const email = uniqueEmail('liff-ciba');
    const account = await createAccount(world.tsunagi, { email });
    const userId = FakeLinePlatform.newUserId();
    const { context, page } = await liffPage(world.line.issueAccessToken({ userId, channelId: CHANNEL_ID }));
    await page.goto(`${app.url}/`);
    await page.getByLabel('Or link with your email address or phone number').fill(email);
    await page.getByRole('button', { name: 'Link with email or phone' }).click();
    await page.getByText('Waiting for your approval…').waitFor();
    const binding = (await page.locator('#binding-message').textContent()) ?? '';
    expect(binding).toMatch(/^[A-Z]{4}-\d{4}$/);
    await shot(page, '1-waiting');
    expect(await axeViolations(page)).toEqual([]);

    const mail = await world.sink.nextMailTo(email);
    expect(mail.text).toContain(binding);
    const phone = await phoneBrowser('en-US');
    await signInFromLink(phone, linkIn(mail.text), email);
    expect(await phone.locator('[data-binding-message]').textContent()).toBe(binding);
    await phone.getByText('Example Shop mini app asks to confirm').waitFor();
    await shot(phone, '2-approve-en');
    expect(await axeViolations(phone)).toEqual([]);
    await phone.getByRole('button', { name: 'Approve Example Shop mini app' }).click();
    await phone.getByText('Approved').first().waitFor();
    await shot(phone, '3-approved-en');
    expect(await axeViolations(phone)).toEqual([]);

    await page.getByText('Linked! You will get updates on LINE.').waitFor({ timeout: 20_000 });
    await shot(page, '4-linked');
    expect(await axeViolations(page)).toEqual([]);
    expect(await app.store.subOf(userId)).toBe(account.id);
    await phone.context().close();
    await context.close();
  });

  it('shows the approval page in Japanese; refusing leaves the mini-app unlinked with a clear message', async () => {
    const email = uniqueEmail('liff-ciba-ja');
    await createAccount(world.tsunagi, { email });
    const userId = FakeLinePlatform.newUserId();
    const { context, page } = await liffPage(world.line.issueAccessToken({ userId, channelId: CHANNEL_ID }));
    await page.goto(`${app.url}/`);
    await page.getByLabel('Or link with your email address or phone number').fill(email);
    await page.getByRole('button', { name: 'Link with email or phone' }).click();
    await page.getByText('Waiting for your approval…').waitFor();
    const binding = (await page.locator('#binding-message').textContent()) ?? '';

    const phone = await phoneBrowser('ja-JP');
    await signInFromLink(phone, linkIn((await world.sink.nextMailTo(email)).text), email);
    await phone.getByText('アプリからの確認依頼を承認しますか？').waitFor();
    expect(await phone.locator('[data-binding-message]').textContent()).toBe(binding);
    await shot(phone, '5-approve-ja');
    expect(await axeViolations(phone)).toEqual([]);
    await phone.getByRole('button', { name: '拒否する' }).click();
    await phone.getByText('拒否しました').first().waitFor();
    await shot(phone, '6-refused-ja');
    expect(await axeViolations(phone)).toEqual([]);

    await page.getByRole('alert').getByText('refused').waitFor({ timeout: 20_000 });
    await shot(page, '7-refused');
    expect(await axeViolations(page)).toEqual([]);
    expect(await app.store.subOf(userId)).toBeUndefined();
    await phone.context().close();
    await context.close();
  });

  it('method 3: the person makes a link code on Tsunagi (ja) and types it in the mini-app', async () => {
    const email = uniqueEmail('liff-code');
    const account = await createAccount(world.tsunagi, { email });
    const phone = await phoneBrowser('ja-JP');
    await phone.goto(`${world.tsunagi.services.config.issuer}/account/link-code/${exportClientId}`);
    await phone.locator('input[type="email"]').fill(email);
    await phone.locator('form[action$="/email"] button[type="submit"]').click();
    await phone.locator('input[autocomplete="one-time-code"]').fill(codeFrom(await world.sink.nextMailTo(email)));
    await phone.locator('form[action$="/code"] button[type="submit"]').click();
    await phone.getByRole('button', { name: '連携コードを作成' }).click();
    const code = (await phone.locator('[data-link-code]').textContent()) ?? '';
    expect(code).toMatch(/^\d{4}-\d{4}$/);
    await shot(phone, '8-link-code-ja');
    expect(await axeViolations(phone)).toEqual([]);

    const userId = FakeLinePlatform.newUserId();
    const { context, page } = await liffPage(world.line.issueAccessToken({ userId, channelId: CHANNEL_ID }));
    await page.goto(`${app.url}/`);
    await page.getByLabel('Or type the link code from your account page').fill('0000-0000' === code ? '1111-1111' : '0000-0000');
    await page.getByRole('button', { name: 'Link with the code' }).click();
    await page.getByRole('alert').getByText('not right').waitFor();
    await page.getByLabel('Or type the link code from your account page').fill(code);
    await page.getByRole('button', { name: 'Link with the code' }).click();
    await page.getByText('Linked! You will get updates on LINE.').waitFor();
    await shot(page, '9-linked-by-code');
    expect(await axeViolations(page)).toEqual([]);
    expect(await app.store.subOf(userId)).toBe(account.id);
    await phone.context().close();
    await context.close();
  });
});
