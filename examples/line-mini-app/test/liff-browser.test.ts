import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { FakeLinePlatform } from '../../../test/fakes/line.js';
import { codeFrom } from '../../../test/fakes/smtp-sink.js';
import { describeBackends, freePort, uniqueEmail } from '../../../test/support/harness.js';
import type { RunningLinkApp } from '../src/main.js';
import { CHANNEL_ID, OTHER_CHANNEL_ID, exampleConfig, startExample, startWorld, type World } from './support.js';
import { axeViolations } from '../../../test/support/axe.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = path.resolve('test-output/screenshots');
const LIFF_ID = '1657000001-AbCdEfGh';

if (!fs.existsSync(CHROMIUM)) {
  console.error(`\n\n*** Chromium not found at ${CHROMIUM}: install chromium or set CHROMIUM_PATH ***\n\n`);
}

// The LIFF page in headless Chromium with a stub `liff` (the LINE app is not here), against the
// example backend, the fake LINE Platform and a real Tsunagi. Only loopback is reachable.
describe(`LIFF page in Chromium (${describeBackends()})`, () => {
  let world: World;
  let app: RunningLinkApp;
  let browser: Browser;

  beforeAll(async () => {
    fs.mkdirSync(SHOTS, { recursive: true });
    world = await startWorld();
    const port = await freePort();
    const origin = `http://127.0.0.1:${port}`;
    const added = await world.tsunagi.services.clients.add({
      client_name: 'Example Shop mini app', redirect_uris: [`${origin}/`], grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: 'none', first_party: true, require_auth_time: true, allowed_cors_origins: [origin],
    });
    app = await startExample(exampleConfig(world, added.client_id as string, { PORT: String(port), LIFF_ID }));
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

  /** A phone-sized page in "the LINE app": liff is a stub holding the given LINE access token. */
  async function liffPage(lineAccessToken: string): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext({ viewport: { width: 390, height: 780 } });
    // Nothing leaves loopback: LINE's SDK URL answers with nothing (the stub stands in), all else is refused.
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (url.hostname === '127.0.0.1') return route.continue();
      if (url.hostname === 'static.line-scdn.net') return route.fulfill({ status: 200, contentType: 'text/javascript', body: '/* LIFF SDK stubbed */' });
      return route.abort();
    });
    await context.addInitScript(({ token }) => {
      const w = globalThis as unknown as { liff: unknown; liffInits: string[] };
      w.liffInits = [];
      w.liff = {
        init: async ({ liffId }: { liffId: string }) => { w.liffInits.push(liffId); },
        isLoggedIn: () => true,
        isInClient: () => true,
        getAccessToken: () => token,
        login: () => { throw new Error('not expected: the stub is logged in'); },
      };
    }, { token: lineAccessToken });
    return { context, page: await context.newPage() };
  }

  const shot = (page: Page, name: string) => page.screenshot({ path: path.join(SHOTS, `line-mini-app-${name}.png`), fullPage: true });

  it('links a LINE user to a new Tsunagi account: liff.init, code + PKCE, token endpoint by CORS, link/complete', async () => {
    const userId = FakeLinePlatform.newUserId();
    const { context, page } = await liffPage(world.line.issueAccessToken({ userId, channelId: CHANNEL_ID }));
    const email = uniqueEmail('liff');
    await page.goto(`${app.url}/`);
    await page.getByRole('button', { name: 'Sign in and link' }).waitFor();
    expect(await page.evaluate(() => (globalThis as unknown as { liffInits: string[] }).liffInits)).toEqual([LIFF_ID]);
    await shot(page, '1-start');
    expect(await axeViolations(page)).toEqual([]);

    await page.getByRole('button', { name: 'Sign in and link' }).click();
    await page.getByLabel('Email address').fill(email);
    await page.getByRole('button', { name: 'Send me a code' }).click();
    await page.locator('input[autocomplete="one-time-code"]').fill(codeFrom(await world.sink.nextMailTo(email)));
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('button', { name: 'Create account' }).click();
    // Tsunagi may offer a passkey after signup; this person says "not now".
    const backHome = page.waitForURL((u) => u.origin === app.url && u.searchParams.has('code'), { timeout: 5000 }).then(() => true, () => false);
    if (!(await backHome)) await page.locator('a.button.secondary').click();

    await page.getByText('Linked! You will get updates on LINE.').waitFor();
    await shot(page, '2-linked');
    expect(await axeViolations(page)).toEqual([]);
    expect(page.url()).toBe(`${app.url}/`);
    const sub = await app.store.subOf(userId);
    expect(sub).toEqual(expect.any(String));
    expect(await app.store.lineUserOf(sub as string)).toBe(userId);

    await page.getByRole('button', { name: 'Unlink my LINE account' }).click();
    await page.getByText('Unlinked.').waitFor();
    expect(await app.store.subOf(userId)).toBeUndefined();
    await context.close();
  });

  it('shows the backend refusing a LINE token of another channel, and links nothing', async () => {
    const userId = FakeLinePlatform.newUserId();
    const { context, page } = await liffPage(world.line.issueAccessToken({ userId, channelId: OTHER_CHANNEL_ID }));
    await page.goto(`${app.url}/`);
    await page.getByRole('button', { name: 'Sign in and link' }).click();
    await page.getByRole('alert').getByText('another LINE channel').waitFor();
    await shot(page, '3-other-channel');
    expect(await axeViolations(page)).toEqual([]);
    expect(page.url()).toBe(`${app.url}/`);
    expect(await app.store.subOf(userId)).toBeUndefined();
    await context.close();
  });
});
