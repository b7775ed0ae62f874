import { decodeJwt } from 'jose';
import type { RunningServer } from '../../src/server.js';
import { DEVICE_CODE_GRANT, DEVICE_POLL_INTERVAL_SECONDS } from '../../src/oidc/device-flow.js';
import { FakeGoogle } from '../fakes/google.js';
import { SmtpSink, codeFrom } from '../fakes/smtp-sink.js';
import { Browser, csrfOf, formAction } from '../support/browserless.js';
import { describeBackends, startTestServer, uniqueEmail } from '../support/harness.js';

const REDIRECT = 'http://127.0.0.1:9/cb';
const LIFF_UA = 'Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/13.14.0 LIFF';
const FACEBOOK_UA = 'Mozilla/5.0 (Linux; Android 12; Pixel 6 Build/SD1A.210817.036; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/94.0.4606.71 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/339.0.0.10.100;]';
const SAFARI_UA = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1';
const uniqueSub = () => `${Date.now()}${Math.floor(Math.random() * 1e9)}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
type Page = { res: Response; body: string; url: string };

interface DeviceAuthorization { device_code: string; user_code: string; verification_uri: string; verification_uri_complete: string; expires_in: number; interval: number }
type TokenAnswer = { status: number; json: Record<string, unknown> };

// RFC 8628 against a real Tsunagi: a public client (a LINE mini-app) starts, a browser (any
// browser, not the webview) enters the code and signs in by email code or with Google (emulator),
// and the client's polling gets tokens. Plus: Google's button is replaced by guidance in LINE.
describe(`device authorization grant and Google inside LINE (${describeBackends()})`, () => {
  let server: RunningServer;
  let sink: SmtpSink;
  let google: FakeGoogle;
  let issuer: string;
  let miniApp: string;
  let codeOnly: string;

  beforeAll(async () => {
    sink = new SmtpSink();
    google = await new FakeGoogle().start();
    server = await startTestServer({ SMTP_URL: await sink.start(), ...google.env() });
    issuer = server.services.config.issuer;
    miniApp = (await server.services.clients.add({
      client_name: 'Example Shop mini app', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', first_party: true,
      grant_types: ['authorization_code', 'refresh_token', DEVICE_CODE_GRANT], response_types: ['code'], require_auth_time: true,
    })).client_id as string;
    codeOnly = (await server.services.clients.add({
      client_name: 'Code only app', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', first_party: true,
    })).client_id as string;
  });

  afterAll(async () => {
    await server?.close();
    await sink?.close();
    await google?.close();
  });

  async function post(path: string, form: Record<string, string>): Promise<TokenAnswer> {
    const res = await fetch(`${issuer}${path}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form) });
    return { status: res.status, json: await res.json() as Record<string, unknown> };
  }
  async function startDevice(clientId = miniApp, params: Record<string, string> = {}): Promise<DeviceAuthorization> {
    const answer = await post('/device/auth', { client_id: clientId, scope: 'openid email', ...params });
    expect(answer.status).toBe(200);
    return answer.json as unknown as DeviceAuthorization;
  }
  const poll = (deviceCode: string, clientId = miniApp) => post('/token', { grant_type: DEVICE_CODE_GRANT, device_code: deviceCode, client_id: clientId });

  /** Opens the verification page in `browser`, types the code and confirms; returns the page after confirming. */
  async function enterCode(browser: Browser, device: DeviceAuthorization, typed = device.user_code): Promise<Page> {
    const input = await browser.follow(device.verification_uri);
    expect(input.res.status).toBe(200);
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(input.body)?.[1] as string;
    const confirm = await browser.follow(`${issuer}/device`, { form: { xsrf, user_code: typed } });
    if (!confirm.body.includes('name="confirm"')) return confirm;
    expect(confirm.body).toContain('data-user-code');
    const confirmXsrf = /name="xsrf" value="([^"]+)"/.exec(confirm.body)?.[1] as string;
    return browser.follow(`${issuer}/device`, { form: { xsrf: confirmXsrf, user_code: typed, confirm: 'yes' } });
  }

  /** Walks Tsunagi's screens after the code was confirmed until the device success page. */
  async function signInAfterCode(browser: Browser, start: Page, how: { email?: string; google?: boolean }): Promise<Page> {
    let page = start;
    for (let step = 0; step < 10; step++) {
      if (page.body.includes('data-device-success')) return page;
      expect(page.res.status).toBe(200);
      const at = (path: string) => new URL(formAction(page.body, path), issuer).href;
      const csrf = page.body.includes('name="_csrf"') ? csrfOf(page.body) : '';
      if (page.body.includes('name="email" type="email"') && how.google) {
        page = await browser.follow(at('/upstream/google'), { form: { _csrf: csrf } });
      } else if (page.body.includes('name="email" type="email"') && how.email) {
        page = await browser.follow(at('/email'), { form: { _csrf: csrf, email: how.email } });
      } else if (page.body.includes('autocomplete="one-time-code"') && how.email) {
        page = await browser.follow(at('/code'), { form: { _csrf: csrf, code: codeFrom(await sink.nextMailTo(how.email)) } });
      } else if (page.body.includes('/upstream-signup/cancel')) {
        page = await browser.follow(at('/upstream-signup'), { form: { _csrf: csrf } });
      } else if (page.body.includes('/signup/cancel')) {
        page = await browser.follow(at('/signup'), { form: { _csrf: csrf } });
      } else if (page.body.includes('/passkey/register/options')) {
        const skip = /<a class="button secondary" href="([^"]+)"/.exec(page.body)?.[1] as string;
        page = await browser.follow(new URL(skip.replace(/&amp;/g, '&'), issuer).href);
      } else {
        throw new Error(`unexpected page ${page.url}: ${page.body.slice(0, 400)}`);
      }
    }
    throw new Error('the device sign-in did not finish');
  }

  it('answers the device authorization request with a user code, the verification URI on Tsunagi and the polling interval', async () => {
    const device = await startDevice();
    expect(device.user_code).toMatch(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    expect(device.verification_uri).toBe(`${issuer}/device`);
    expect(device.verification_uri_complete).toBe(`${issuer}/device?user_code=${encodeURIComponent(device.user_code)}`);
    expect(device.interval).toBe(DEVICE_POLL_INTERVAL_SECONDS);
    expect(device.expires_in).toBeGreaterThan(0);
    const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json() as Record<string, unknown>;
    expect(discovery.device_authorization_endpoint).toBe(`${issuer}/device/auth`);
    expect(discovery.grant_types_supported).toContain(DEVICE_CODE_GRANT);
  });

  it('refuses the device grant to a client not registered for it', async () => {
    const answer = await post('/device/auth', { client_id: codeOnly, scope: 'openid' });
    expect(answer.status).toBe(400);
    // oidc-provider answers invalid_request (not unauthorized_client) here; what matters is the refusal.
    expect(answer.json).toEqual(expect.objectContaining({ error: 'invalid_request', error_description: expect.stringContaining('is not allowed for this client') }));
  });

  it('polls authorization_pending, slows a client polling too fast, then issues tokens (with the nonce) after an email-code sign-in', async () => {
    const nonce = `n-${uniqueSub()}`;
    const device = await startDevice(miniApp, { nonce, scope: 'openid email offline_access' });

    const first = await poll(device.device_code);
    expect(first).toEqual({ status: 400, json: expect.objectContaining({ error: 'authorization_pending' }) });
    // Two more at once: at most two polls fit in distinct intervals, so at least one is slowed down.
    const rapid = [await poll(device.device_code), await poll(device.device_code)];
    expect(rapid.map((a) => a.json.error)).toContain('slow_down');
    expect(rapid.every((a) => a.status === 400 && ['slow_down', 'authorization_pending'].includes(a.json.error as string))).toBe(true);
    // A client that waits the interval is not slowed down.
    await sleep(DEVICE_POLL_INTERVAL_SECONDS * 1000 + 200);
    expect((await poll(device.device_code)).json.error).toBe('authorization_pending');

    const email = uniqueEmail('device');
    const browser = new Browser({ 'user-agent': SAFARI_UA });
    const success = await signInAfterCode(browser, await enterCode(browser, device, device.user_code.toLowerCase().replace('-', '')), { email });
    expect(success.body).toContain('Example Shop mini app');

    const tokens = await poll(device.device_code);
    expect(tokens.status).toBe(200);
    expect(tokens.json).toEqual(expect.objectContaining({ token_type: 'Bearer', access_token: expect.any(String), id_token: expect.any(String), refresh_token: expect.any(String) }));
    const claims = decodeJwt(tokens.json.id_token as string);
    expect(claims).toMatchObject({ iss: issuer, aud: miniApp, nonce, email, auth_time: expect.any(Number) });
    const userinfo = await (await fetch(`${issuer}/me`, { headers: { authorization: `Bearer ${tokens.json.access_token as string}` } })).json() as Record<string, unknown>;
    expect(userinfo.sub).toBe(claims.sub);

    // The device code is single use.
    const again = await poll(device.device_code);
    expect(again.status).toBe(400);
    expect(again.json.error).toBe('invalid_grant');
    // And so is the user code: no confirmation is offered for it again.
    const reused = await enterCode(new Browser(), device);
    expect(reused.body).not.toContain('name="confirm"');
    expect(reused.body).toMatch(/That code (was already used|is not right)/);
  }, 60_000);

  it('lets the person sign in with Google in the browser (emulator), and the client gets tokens for that account', async () => {
    const device = await startDevice(miniApp, { scope: 'openid email' });
    const sub = uniqueSub();
    const email = `device.${sub}@gmail.com`;
    google.nextUser({ sub, email, email_verified: true, name: 'Device Person' });
    const browser = new Browser({ 'user-agent': SAFARI_UA });
    const before = google.authorizeRequests.length;
    await signInAfterCode(browser, await enterCode(browser, device), { google: true });
    expect(google.authorizeRequests.length).toBe(before + 1);

    const tokens = await poll(device.device_code);
    expect(tokens.status).toBe(200);
    const claims = decodeJwt(tokens.json.id_token as string);
    expect(claims).toMatchObject({ aud: miniApp, email, email_verified: true });
    const identity = await server.services.identities.findByIssuerSubject(google.issuer, sub);
    expect(identity?.accountId).toBe(claims.sub);
  });

  it('tells the client access_denied when the person cancels at the confirmation, and the code cannot be used again', async () => {
    const device = await startDevice();
    const browser = new Browser();
    const input = await browser.follow(device.verification_uri_complete);
    // verification_uri_complete posts the code by itself and lands on the confirmation.
    const autoPost = /<form method="post" action="([^"]+)"/.exec(input.body)?.[1];
    expect(autoPost).toBe(`${issuer}/device`);
    const fields = Object.fromEntries([...input.body.matchAll(/name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    const confirm = await browser.follow(`${issuer}/device`, { form: fields as Record<string, string> });
    expect(confirm.body).toContain(device.user_code);
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(confirm.body)?.[1] as string;
    const aborted = await browser.follow(`${issuer}/device`, { form: { xsrf, user_code: device.user_code, abort: 'yes' } });
    expect(aborted.body).toContain('The sign-in was cancelled');

    const answer = await poll(device.device_code);
    expect(answer.status).toBe(400);
    expect(answer.json.error).toBe('access_denied');
    expect((await enterCode(new Browser(), device)).body).toContain('That code was already used');
  });

  // An expired code (on the page and to the polling client) is in test/e2e/artifact-expiry.test.ts,
  // through real expiry with a clock the test controls.
  it('refuses a wrong code on the page', async () => {
    const wrong = await enterCode(new Browser(), await startDevice(), 'BCDF-GHJK');
    expect(wrong.res.status).toBe(200);
    expect(wrong.body).toContain('That code is not right');
    expect(wrong.body).toContain('aria-invalid="true"');
  });

  describe('Google in an in-app browser', () => {
    async function loginPage(browser: Browser, clientId: string) {
      const url = new URL(`${issuer}/auth`);
      url.search = new URLSearchParams({
        client_id: clientId, redirect_uri: REDIRECT, response_type: 'code', scope: 'openid', state: 's1', nonce: 'n1',
        code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256',
      }).toString();
      const page = await browser.follow(url.href);
      expect(page.res.status).toBe(200);
      return page;
    }

    it('shows LINE guidance instead of the Google button: open in the external browser, or sign in with a code', async () => {
      const page = await loginPage(new Browser({ 'user-agent': LIFF_UA }), miniApp);
      expect(page.body).not.toContain('/upstream/google"');
      expect(page.body).toContain('data-in-app-browser="line"');
      expect(page.body).toContain('does not allow signing in inside LINE');
      expect(page.body).toContain('Sign in with a code');
      // Email codes still work right here.
      expect(page.body).toContain('name="email" type="email"');
      const external = new URL((/href="([^"]+)" data-open-external/.exec(page.body)?.[1] as string).replace(/&amp;/g, '&'));
      expect(external.origin + external.pathname).toBe(`${issuer}/auth`);
      expect(external.searchParams.get('openExternalBrowser')).toBe('1');
      expect(external.searchParams.get('client_id')).toBe(miniApp);
      expect(external.searchParams.get('code_challenge')).toBe('E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM');
      expect(external.searchParams.get('state')).toBe('s1');

      // The phone's browser opens that link: a new sign-in there, with the Google button.
      const inBrowser = await new Browser({ 'user-agent': SAFARI_UA }).follow(external.href);
      expect(inBrowser.body).toContain('/upstream/google"');
      expect(inBrowser.body).not.toContain('data-in-app-browser');
    });

    it('does not mention sign-in with a code to a client without the device grant, and has no LINE switch for Facebook', async () => {
      const page = await loginPage(new Browser({ 'user-agent': FACEBOOK_UA }), codeOnly);
      expect(page.body).toContain('data-in-app-browser="facebook"');
      expect(page.body).not.toContain('Sign in with a code');
      expect(page.body).not.toContain('openExternalBrowser');
      // No way out of Facebook's browser is offered: this client could not pick up a sign-in finished elsewhere.
      expect(page.body).not.toContain('data-open-external');
      expect(page.body).toContain('Sign in here with email, a text message, a passkey or Apple instead.');
    });

    it('answers a POST to Google from LINE with the guidance page, never a redirect to Google', async () => {
      const browser = new Browser({ 'user-agent': LIFF_UA });
      const page = await loginPage(browser, miniApp);
      const uid = /\/interaction\/([^/"]+)\/email/.exec(page.body)?.[1] as string;
      const before = google.authorizeRequests.length;
      const answer = await browser.request(`${issuer}/interaction/${uid}/upstream/google`, { form: { _csrf: csrfOf(page.body) } });
      expect(answer.res.status).toBe(200);
      expect(answer.res.headers.get('location')).toBeNull();
      expect(answer.body).toContain('Sign in with Google in your browser');
      expect(answer.body).toContain('openExternalBrowser=1');
      expect(google.authorizeRequests.length).toBe(before);
      expect(await server.services.host.current.Interaction.find(uid)).toBeDefined();

      // The same POST from a real browser goes to Google.
      const safari = new Browser({ 'user-agent': SAFARI_UA });
      const real = await loginPage(safari, miniApp);
      const realUid = /\/interaction\/([^/"]+)\/email/.exec(real.body)?.[1] as string;
      const toGoogle = await safari.request(`${issuer}/interaction/${realUid}/upstream/google`, { form: { _csrf: csrfOf(real.body) } });
      expect(toGoogle.res.status).toBe(303);
      expect(toGoogle.res.headers.get('location')).toContain(google.issuer);
    });
  });
});
