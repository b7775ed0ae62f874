import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as oidc from 'openid-client';
import type { RunningServer } from '../../src/server.js';
import { Browser, csrfOf, formAction } from '../support/browserless.js';
import { codeFrom, SmtpSink } from '../fakes/smtp-sink.js';
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
  const sink = new SmtpSink();
  const smtpUrl = await sink.start();
  const rp = new RelyingPartyServer();
  const redirectUri = `${await rp.start()}/cb`;
  const server = await startTestServer({ SMTP_URL: smtpUrl, ...env }, overrides);
  const spa = await server.services.clients.add({
    client_name: clientName,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_method: 'none',
    first_party: true,
  });
  return {
    server, sink, redirectUri, issuer: server.services.config.issuer, spaId: spa.client_id as string,
    async close() {
      await server.close();
      await sink.close();
      await rp.close();
    },
  };
}
