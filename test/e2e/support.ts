import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as oidc from 'openid-client';
import type { RunningServer } from '../../src/server.js';
import { Browser, csrfOf, formAction } from '../support/browserless.js';
import type { Browser as Chromium, Page } from 'playwright-core';
import { FakeApple } from '../fakes/apple.js';
import { FakeGoogle } from '../fakes/google.js';
import { codeFrom, SmtpSink } from '../fakes/smtp-sink.js';
import { FakeTwilio } from '../fakes/twilio.js';
import { launchChromium } from '../support/chromium.js';
import { startTestServer } from '../support/harness.js';
import type { ServiceOverrides } from '../../src/services.js';

/** A relying party's callback endpoint on loopback; also receives back-channel logout tokens. */
export class RelyingPartyServer {
  readonly logoutTokens: string[] = [];
  private server = http.createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/backchannel') {
      let body = '';
      req.on('data', (c: Buffer) => { body += c.toString(); });
      req.on('end', () => {
        const token = new URLSearchParams(body).get('logout_token');
        if (token) this.logoutTokens.push(token);
        res.writeHead(200).end();
      });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end('rp');
  });
  origin = '';

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', () => resolve()));
    this.origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.origin;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

export async function discover(server: RunningServer, clientId: string, clientSecret?: string, metadata: Partial<oidc.ClientMetadata> = {}): Promise<oidc.Configuration> {
  return oidc.discovery(new URL(server.services.config.issuer), clientId, { ...metadata, ...(clientSecret ? { client_secret: clientSecret } : {}) },
    clientSecret ? oidc.ClientSecretBasic(clientSecret) : oidc.None(), { execute: [oidc.allowInsecureRequests] });
}

export interface AuthRequest { url: URL; verifier: string; state: string; nonce: string }

export async function authorizationRequest(config: oidc.Configuration, redirectUri: string, params: Record<string, string> = {}): Promise<AuthRequest> {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid email',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...params,
  });
  return { url, verifier, state, nonce };
}

export interface SignInTrace { sawSignup: boolean; sawPasskeyOffer: boolean; sawConsent: boolean; pages: string[] }

/**
 * Walks Tsunagi's screens like a person: type the email, read the code from the SMTP sink, type it,
 * confirm signup and consent when asked, until the browser is sent back to the relying party.
 */
export async function signInWithEmail(
  browser: Browser, issuer: string, authUrl: URL, redirectUri: string, email: string, sink: SmtpSink,
  opts: { consent?: boolean } = {},
): Promise<{ callback: URL; trace: SignInTrace }> {
  const trace: SignInTrace = { sawSignup: false, sawPasskeyOffer: false, sawConsent: false, pages: [] };
  const isCallback = (u: string) => u.startsWith(redirectUri);
  let page = await browser.follow(authUrl.href, {}, isCallback);
  for (let step = 0; step < 10; step++) {
    if (isCallback(page.url)) return { callback: new URL(page.url), trace };
    if (page.res.status !== 200) throw new Error(`unexpected ${page.res.status} at ${page.url}: ${page.body.slice(0, 300)}`);
    const body = page.body;
    const csrf = body.includes('name="_csrf"') ? csrfOf(body) : '';
    const at = (path: string) => new URL(formAction(page.body, path), issuer).href;
    if (page.body.includes('name="email" type="email"')) {
      trace.pages.push('login');
      page = await browser.follow(at('/email'), { form: { _csrf: csrf, email } }, isCallback);
    } else if (page.body.includes('autocomplete="one-time-code"')) {
      trace.pages.push('code');
      const code = codeFrom(await sink.nextMailTo(email));
      page = await browser.follow(at('/code'), { form: { _csrf: csrf, code } }, isCallback);
    } else if (page.body.includes('/signup/cancel')) {
      trace.pages.push('signup');
      trace.sawSignup = true;
      page = await browser.follow(at('/signup'), { form: { _csrf: csrf } }, isCallback);
    } else if (page.body.includes('/passkey/register/options')) {
      // The passkey offer after signup: a person without a passkey device takes the "not now" link.
      trace.pages.push('passkey-offer');
      trace.sawPasskeyOffer = true;
      const skip = /<a class="button secondary" href="([^"]+)"/.exec(page.body)?.[1];
      if (!skip) throw new Error('the passkey offer has no way to continue');
      page = await browser.follow(new URL(skip.replace(/&amp;/g, '&'), issuer).href, {}, isCallback);
    } else if (page.body.includes('/consent"')) {
      trace.pages.push('consent');
      trace.sawConsent = true;
      if (opts.consent === false) page = await browser.follow(at('/abort'), { form: { _csrf: csrf } }, isCallback);
      else page = await browser.follow(at('/consent'), { form: { _csrf: csrf } }, isCallback);
    } else {
      throw new Error(`unknown page at ${page.url}: ${page.body.slice(0, 500)}`);
    }
  }
  throw new Error('sign-in did not finish');
}

/**
 * Asks `times` times, from one login page of this authorization request, for a code to `email`;
 * the statuses and the last page, for the per-address send limit.
 */
export async function requestEmailCodes(
  config: oidc.Configuration, redirectUri: string, issuer: string, email: string, times: number,
): Promise<{ statuses: number[]; last: string }> {
  const browser = new Browser();
  const login = await browser.follow((await authorizationRequest(config, redirectUri)).url.href);
  const action = new URL(formAction(login.body, '/email'), issuer).href;
  const statuses: number[] = [];
  let last = '';
  for (let i = 0; i < times; i++) {
    const res = await browser.request(action, { form: { _csrf: csrfOf(login.body), email } });
    statuses.push(res.res.status);
    last = res.body;
  }
  return { statuses, last };
}

/**
 * Whether the browser is still signed in at Tsunagi: a new authorization request goes straight back
 * to the client; otherwise it shows the login page (anything else is an error, not a "no").
 */
export async function stillSignedIn(browser: Browser, config: oidc.Configuration, redirectUri: string): Promise<boolean> {
  const req = await authorizationRequest(config, redirectUri, { scope: 'openid' });
  const page = await browser.follow(req.url.href, {}, (u) => u.startsWith(redirectUri));
  if (page.url.startsWith(redirectUri)) return true;
  if (!page.body.includes('name="email" type="email"')) throw new Error(`neither signed in nor at the login page: ${page.res.status} ${page.url}`);
  return false;
}

/** What a stage starts besides Tsunagi and its SMTP sink. */
export interface StageOptions {
  /** More server environment (merged over the stage's own). */
  env?: Record<string, string>;
  overrides?: ServiceOverrides;
  /**
   * Tsunagi at http://localhost:<port> instead of 127.0.0.1: WebAuthn refuses an IP address as the
   * relying party id, and with the emulators on 127.0.0.1 Apple's form_post crosses sites for real.
   */
  localhostIssuer?: boolean;
  google?: boolean;
  apple?: boolean;
  /** The fake Twilio, with Tsunagi sending its own codes through the Messages API. */
  twilio?: boolean;
  /** A relying party callback server (`redirectUri` = its /cb); on unless false. */
  relyingParty?: boolean;
  /** Headless Chromium (`browser`). */
  chromium?: boolean;
}

type ClientMetadata = Parameters<RunningServer['services']['clients']['add']>[0];

/**
 * Tsunagi with everything around it that the end-to-end tests need, started and stopped as one:
 * the SMTP sink, the fake Google/Apple/Twilio, a relying party's callback server and Chromium.
 * Asking for a part the stage was not started with throws, rather than handing back undefined.
 */
export interface Stage {
  server: RunningServer;
  issuer: string;
  sink: SmtpSink;
  readonly google: FakeGoogle;
  readonly apple: FakeApple;
  readonly twilio: FakeTwilio;
  readonly rp: RelyingPartyServer;
  readonly redirectUri: string;
  readonly browser: Chromium;
  /** Registers a client; its id (and secret, when confidential). */
  addClient(metadata: ClientMetadata): Promise<{ clientId: string; clientSecret: string | undefined }>;
  /** Registers a confidential client and discovers Tsunagi as it (openid-client). */
  relyingPartyClient(metadata: ClientMetadata): Promise<oidc.Configuration>;
  close(): Promise<void>;
}

export async function startStage(options: StageOptions = {}): Promise<Stage> {
  // Each part registers how to stop it as soon as it runs, so a part that fails to start (a busy
  // machine, a missing Chromium) does not leave the others holding ports and keeping jest alive.
  const stops: Array<() => Promise<unknown>> = [];
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  };
  try {
    const sink = new SmtpSink();
    const smtpUrl = await sink.start();
    stops.push(() => sink.close());
    const google = options.google ? await new FakeGoogle().start() : undefined;
    if (google) stops.push(() => google.close());
    const apple = options.apple ? await new FakeApple().start() : undefined;
    if (apple) stops.push(() => apple.close());
    const twilio = options.twilio ? new FakeTwilio() : undefined;
    const twilioUrl = twilio ? await twilio.start() : undefined;
    if (twilio) stops.push(() => twilio.close());
    const rp = options.relyingParty === false ? undefined : new RelyingPartyServer();
    const redirectUri = rp ? `${await rp.start()}/cb` : undefined;
    if (rp) stops.push(() => rp.close());
    const server = await startTestServer({
      SMTP_URL: smtpUrl,
      ...(options.localhostIssuer ? { ISSUER: 'http://localhost:{port}' } : {}),
      ...google?.env(),
      ...apple?.env(),
      ...(twilio ? { TWILIO_ACCOUNT_SID: twilio.accountSid, TWILIO_AUTH_TOKEN: twilio.authToken, TWILIO_FROM: '+15005550006', TWILIO_API_BASE_URL: twilioUrl as string } : {}),
      ...options.env,
    }, options.overrides);
    stops.push(() => server.close());
    const browser = options.chromium ? await launchChromium() : undefined;
    if (browser) stops.push(() => browser.close());

    const started = <T>(part: T | undefined, name: string): T => {
      if (part === undefined) throw new Error(`this stage was started without ${name}`);
      return part;
    };
    const addClient: Stage['addClient'] = async (metadata) => {
      const added = await server.services.clients.add(metadata);
      return { clientId: added.client_id as string, clientSecret: added.client_secret as string | undefined };
    };
    return {
      server,
      issuer: server.services.config.issuer,
      sink,
      get google() { return started(google, 'the fake Google'); },
      get apple() { return started(apple, 'the fake Apple'); },
      get twilio() { return started(twilio, 'the fake Twilio'); },
      get rp() { return started(rp, 'a relying party'); },
      get redirectUri() { return started(redirectUri, 'a relying party'); },
      get browser() { return started(browser, 'Chromium'); },
      addClient,
      async relyingPartyClient(metadata) {
        const { clientId, clientSecret } = await addClient(metadata);
        return discover(server, clientId, clientSecret);
      },
      close: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** A Tsunagi with an SMTP sink, a relying party on loopback and one first-party public SPA client. */
export interface SpaFixture {
  server: RunningServer;
  sink: SmtpSink;
  issuer: string;
  redirectUri: string;
  spaId: string;
  close(): Promise<void>;
}

export async function startSpaFixture(clientName: string, env: Record<string, string> = {}, overrides: ServiceOverrides = {}): Promise<SpaFixture> {
  const stage = await startStage({ env, overrides });
  const { clientId } = await stage.addClient({
    client_name: clientName,
    redirect_uris: [stage.redirectUri],
    grant_types: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_method: 'none',
    first_party: true,
  });
  return { server: stage.server, sink: stage.sink, redirectUri: stage.redirectUri, issuer: stage.issuer, spaId: clientId, close: () => stage.close() };
}

/** Signs up on the account page with an email code, skipping the passkey offer; ends on the account page, signed in. */
export async function signUpOnAccountPage(page: Page, at: { issuer: string; sink: SmtpSink }, email: string): Promise<void> {
  await page.goto(`${at.issuer}/account`);
  await page.locator('#email').fill(email);
  await page.locator('form[action$="/email"] button[type=submit]').click();
  await page.locator('input[autocomplete="one-time-code"]').fill(codeFrom(await at.sink.nextMailTo(email)));
  await page.locator('form[action$="/code"] button[type=submit]').click();
  await page.locator('form[action$="/signup"] button[type=submit]').click();
  await page.locator('a.button.secondary').click();
  await page.waitForURL(`${at.issuer}/account`);
}
