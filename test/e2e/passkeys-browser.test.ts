import type { Browser, BrowserContext, CDPSession, Page } from 'playwright-core';
import * as oidc from 'openid-client';
import type { RunningServer } from '../../src/server.js';
import { SmtpSink, codeFrom } from '../fakes/smtp-sink.js';
import { describeBackends, uniqueEmail } from '../support/harness.js';
import { authorizationRequest, startStage, type Stage } from './support.js';
import { screenshot } from '../support/chromium.js';
import { axeViolations } from '../support/axe.js';

/** A CDP virtual authenticator: a platform authenticator with resident keys and user verification. */
async function addAuthenticator(page: Page): Promise<{ cdp: CDPSession; authenticatorId: string }> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  return { cdp, authenticatorId };
}

// Passkeys end to end in Chromium with a virtual authenticator: offered after signup, used to sign in
// (button and autofill), added and refused on the account page. The issuer is http://localhost:<port>
// because WebAuthn refuses an IP address as the relying party id.
describe(`passkeys in Chromium (${describeBackends()})`, () => {
  let stage: Stage;
  let server: RunningServer;
  let sink: SmtpSink;
  let browser: Browser;
  let client: oidc.Configuration;
  let redirectUri: string;
  let issuer: string;

  beforeAll(async () => {
    stage = await startStage({ localhostIssuer: true, chromium: true });
    ({ server, sink, browser, issuer, redirectUri } = stage);
    client = await stage.relyingPartyClient({ client_name: 'Example Shop', redirect_uris: [redirectUri], first_party: true });
  });
  afterAll(() => stage?.close());

  const shot = screenshot;
  const newContext = (locale: 'en' | 'ja'): Promise<BrowserContext> =>
    browser.newContext({ viewport: { width: 390, height: 780 }, locale: locale === 'ja' ? 'ja-JP' : 'en-US' });

  /** Signs up with an email code and stops on the passkey offer. */
  async function signUpToOffer(page: Page, email: string, params: Record<string, string> = {}) {
    const req = await authorizationRequest(client, redirectUri, { scope: 'openid email', ...params });
    await page.goto(req.url.href);
    await page.locator('#email').fill(email);
    await page.locator('form[action$="/email"] button[type=submit]').click();
    await page.locator('input[autocomplete="one-time-code"]').fill(codeFrom(await sink.nextMailTo(email)));
    await page.locator('form[action$="/code"] button[type=submit]').click();
    await page.locator('form[action$="/signup"] button[type=submit]').click();
    await page.locator('form[data-passkey-register]').waitFor();
    return req;
  }

  async function tokensFrom(page: Page, req: Awaited<ReturnType<typeof authorizationRequest>>) {
    await page.waitForURL((u) => u.href.startsWith(redirectUri));
    return oidc.authorizationCodeGrant(client, new URL(page.url()), { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
  }

  const passkeysOf = async (email: string) => {
    const account = await server.services.accounts.findAccountByVerifiedEmail({ address: email, key: email.toLowerCase() });
    if (!account) throw new Error(`no account for ${email}`);
    return { account, passkeys: await server.services.passkeyStore.listForAccount(account.id) };
  };

  it('creates a passkey right after signup, then signs in with it (button, then autofill) with amr hwk', async () => {
    const context = await newContext('en');
    const page = await context.newPage();
    const cspViolations: string[] = [];
    page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });
    const email = uniqueEmail('passkey-signup');

    const signup = await signUpToOffer(page, email);
    await shot(page, 'en-12-passkey-offer');
    expect(await axeViolations(page)).toEqual([]);
    const { cdp, authenticatorId } = await addAuthenticator(page);
    await page.locator('#passkey-name').fill('Test phone');
    await page.getByRole('button', { name: 'Create a passkey' }).click();
    const first = await tokensFrom(page, signup);
    expect(first.claims()?.email).toBe(email);
    expect(first.claims()?.amr).toEqual(['otp']);

    const { account, passkeys } = await passkeysOf(email);
    expect(passkeys).toHaveLength(1);
    expect(passkeys[0]).toMatchObject({ name: 'Test phone', deviceType: 'singleDevice' });
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    expect(credentials).toHaveLength(1);
    expect(credentials[0]?.isResidentCredential).toBe(true);
    expect(Buffer.from(credentials[0]?.credentialId as string, 'base64').toString('base64url')).toBe(passkeys[0]?.id);
    const notice = await sink.nextMailTo(email);
    expect(notice.subject).toBe('A passkey was added to your Tsunagi account');
    const events = await server.services.accounts.listAuditEvents({ accountId: account.id, type: 'passkey_added' });
    expect(events).toHaveLength(1);

    // The button: a discoverable credential, no email typed.
    const byButton = await authorizationRequest(client, redirectUri, { scope: 'openid email', prompt: 'login' });
    await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled: false });
    await page.goto(byButton.url.href);
    await page.getByRole('button', { name: 'Sign in with a passkey' }).waitFor();
    await shot(page, 'en-13-login-passkey');
    expect(await axeViolations(page)).toEqual([]);
    await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled: true });
    await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
    const second = await tokensFrom(page, byButton);
    expect(second.claims()?.sub).toBe(first.claims()?.sub);
    expect(second.claims()?.amr).toEqual(['hwk']);
    expect(second.claims()?.acr).toBe('phr');
    const used = (await passkeysOf(email)).passkeys[0];
    expect(used?.lastUsedAt).toBeInstanceOf(Date);

    // Autofill (conditional mediation): the virtual authenticator answers the pending request itself.
    const byAutofill = await authorizationRequest(client, redirectUri, { scope: 'openid email', prompt: 'login' });
    await page.goto(byAutofill.url.href);
    const third = await tokensFrom(page, byAutofill);
    expect(third.claims()?.sub).toBe(first.claims()?.sub);
    expect(third.claims()?.amr).toEqual(['hwk']);

    expect(cspViolations).toEqual([]);
    await context.close();
  });

  it('adds a passkey on the account page, refuses the same authenticator twice, and signs in with it (ja)', async () => {
    const context = await newContext('ja');
    const page = await context.newPage();
    const email = uniqueEmail('passkey-account');
    const signup = await signUpToOffer(page, email, { ui_locales: 'ja' });
    await page.getByRole('button', { name: 'パスキーを作成' }).waitFor();
    await shot(page, 'ja-12-passkey-offer');
    expect(await axeViolations(page)).toEqual([]);
    await page.getByRole('link', { name: '今はしないで Example Shop に進む' }).click();
    await tokensFrom(page, signup);
    expect((await passkeysOf(email)).passkeys).toHaveLength(0);

    // Same browser session: the account page trusts the recent sign-in.
    await page.goto(`${issuer}/account`);
    if (page.url().includes('/interaction/')) {
      // The account page is its own client: with a live session only the email-code step may remain.
      await page.locator('#email').fill(email);
      await page.locator('form[action$="/email"] button[type=submit]').click();
      await page.locator('input[autocomplete="one-time-code"]').fill(codeFrom(await sink.nextMailTo(email)));
      await page.locator('form[action$="/code"] button[type=submit]').click();
    }
    await page.waitForURL(`${issuer}/account`);
    const { cdp, authenticatorId } = await addAuthenticator(page);
    await page.locator('#passkey-name').fill('仕事用ノートPC');
    await page.getByRole('button', { name: 'パスキーを追加' }).click();
    await page.waitForURL(/notice=passkey_added/);
    expect(await page.textContent('main')).toContain('仕事用ノートPC');
    await shot(page, 'ja-14-account-passkey');
    expect(await axeViolations(page)).toEqual([]);
    expect((await passkeysOf(email)).passkeys.map((k) => k.name)).toEqual(['仕事用ノートPC']);
    expect((await sink.nextMailTo(email)).subject).toContain('パスキー');

    // The same authenticator again: excluded by the server's options, refused in the browser, said plainly.
    await page.locator('#passkey-name').fill('もう一度');
    await page.getByRole('button', { name: 'パスキーを追加' }).click();
    await page.locator('[data-passkey-error]:not([hidden])').waitFor();
    expect(await page.textContent('[data-passkey-error]')).toBe('この端末には、すでにあなたのアカウントのパスキーがあります。');
    await shot(page, 'ja-15-account-passkey-duplicate');
    expect(await axeViolations(page)).toEqual([]);
    expect((await passkeysOf(email)).passkeys).toHaveLength(1);

    // Signing in with it (button; autofill paused so the button is what answers).
    await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled: false });
    const again = await authorizationRequest(client, redirectUri, { scope: 'openid email', prompt: 'login', ui_locales: 'ja' });
    await page.goto(again.url.href);
    await page.getByRole('button', { name: 'パスキーでログイン' }).waitFor();
    await shot(page, 'ja-13-login-passkey');
    expect(await axeViolations(page)).toEqual([]);
    await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled: true });
    await page.getByRole('button', { name: 'パスキーでログイン' }).click();
    const tokens = await tokensFrom(page, again);
    expect(tokens.claims()?.amr).toEqual(['hwk']);
    await context.close();
  });

  it('says plainly when the passkey offered is not registered here, and signs nobody in', async () => {
    const context = await newContext('en');
    const page = await context.newPage();
    const email = uniqueEmail('passkey-orphan');
    const signup = await signUpToOffer(page, email);
    const { cdp, authenticatorId } = await addAuthenticator(page);
    await page.getByRole('button', { name: 'Create a passkey' }).click();
    await tokensFrom(page, signup);
    const { passkeys } = await passkeysOf(email);
    // The passkey is removed on the server side only (as after removing it on another device's account page).
    await server.services.db.pool.query('DELETE FROM webauthn_credentials WHERE id = $1', [passkeys[0]?.id]);

    await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled: false });
    const req = await authorizationRequest(client, redirectUri, { scope: 'openid email', prompt: 'login' });
    await page.goto(req.url.href);
    await page.getByRole('button', { name: 'Sign in with a passkey' }).waitFor();
    await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled: true });
    await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
    await page.locator('[data-passkey-error]:not([hidden])').waitFor();
    expect(await page.textContent('[data-passkey-error]')).toContain('not registered with your account');
    expect(page.url()).toContain('/interaction/');
    await shot(page, 'en-15-login-passkey-unknown');
    expect(await axeViolations(page)).toEqual([]);
    await context.close();
  });
});
