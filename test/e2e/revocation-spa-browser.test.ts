import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { SmtpSink, codeFrom } from '../fakes/smtp-sink.js';
import { describeBackends, uniqueEmail } from '../support/harness.js';
import { startStage, type Stage } from './support.js';

// oidc-client-ts's browser bundle, as an SPA would ship it.
const OIDC_CLIENT_TS_BUNDLE = path.join(path.dirname(createRequire(import.meta.url).resolve('oidc-client-ts')), '../browser/oidc-client-ts.min.js');

/** A tiny single-page app on its own loopback origin: oidc-client-ts signs in a public client and revokes. */
class SpaServer {
  private readonly server = http.createServer((req, res) => this.handle(req, res));
  origin = '';
  constructor(private readonly authority: () => string, private readonly clientId: () => string) {}

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    // "localhost", not 127.0.0.1: another origin than Tsunagi's, so token and revocation calls are CORS.
    this.origin = `http://localhost:${(this.server.address() as AddressInfo).port}`;
    return this.origin;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', this.origin);
    if (url.pathname === '/oidc-client-ts.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(fs.readFileSync(OIDC_CLIENT_TS_BUNDLE));
    } else if (url.pathname === '/app.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(`
        const userManager = new oidc.UserManager({
          authority: ${JSON.stringify(this.authority())},
          client_id: ${JSON.stringify(this.clientId())},
          redirect_uri: ${JSON.stringify(`${this.origin}/callback`)},
          scope: 'openid email',
          loadUserInfo: false,
          revokeTokensOnSignout: true,
        });
        window.spa = {
          signIn: () => userManager.signinRedirect(),
          finishSignIn: async () => {
            const user = await userManager.signinRedirectCallback();
            return { accessToken: user.access_token, refreshToken: user.refresh_token ?? null };
          },
          revokeTokens: () => userManager.revokeTokens().then(() => 'resolved', (err) => 'threw: ' + err.message),
          // Revokes first (revokeTokensOnSignout), then goes to Tsunagi's end_session endpoint.
          signOut: () => userManager.signoutRedirect().catch((err) => { document.title = 'threw: ' + err.message; }),
        };`);
    } else if (url.pathname === '/' || url.pathname === '/callback') {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>SPA</title><script src="/oidc-client-ts.js"></script><script src="/app.js"></script>');
    } else {
      res.writeHead(404).end();
    }
  }
}

// RFC 7009 revocation as a strict SPA library meets it: oidc-client-ts in Chromium, not a hand-made request.
describe(`token revocation from oidc-client-ts in Chromium (${describeBackends()})`, () => {
  let stage: Stage;
  let sink: SmtpSink;
  let spa: SpaServer;
  let browser: Browser;
  let issuer: string;
  let clientId: string;

  beforeAll(async () => {
    stage = await startStage({ relyingParty: false, chromium: true });
    ({ sink, browser, issuer } = stage);
    spa = new SpaServer(() => issuer, () => clientId);
    const origin = await spa.start();
    ({ clientId } = await stage.addClient({
      client_name: 'Example SPA', redirect_uris: [`${origin}/callback`], token_endpoint_auth_method: 'none', first_party: true,
      grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], allowed_cors_origins: [origin],
    }));
  }, 120_000); // a server and Chromium to start on a busy machine

  afterAll(async () => {
    await spa?.close();
    await stage?.close();
  });

  const form = (fields: Record<string, string>) => ({
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields),
  });
  const introspect = async (token: string) => {
    const res = await fetch(`${issuer}/token/introspection`, form({ token, client_id: clientId }));
    expect(res.status).toBe(200);
    return (await res.json() as { active: boolean }).active;
  };

  it('lets revokeTokens() resolve and signoutRedirect() revoke on sign-out, and the tokens are no longer active', async () => {
    const page = await browser.newPage();
    try {
      await page.goto(`${spa.origin}/`);
      // signinRedirect() navigates away: not awaited inside the page.
      await page.evaluate(() => { void (globalThis as unknown as { spa: { signIn(): Promise<void> } }).spa.signIn(); });
      await page.waitForURL((u) => u.href.startsWith(`${issuer}/interaction/`));
      const email = uniqueEmail('spa');
      await page.locator('#email').fill(email);
      await page.locator('form[action$="/email"] button[type=submit]').click();
      await page.locator('input[autocomplete="one-time-code"]').fill(codeFrom(await sink.nextMailTo(email)));
      await page.locator('form[action$="/code"] button[type=submit]').click();
      await page.locator('form[action$="/signup"] button[type=submit]').click();
      await page.locator('a.button.secondary').click(); // not now to the passkey offer
      await page.waitForURL((u) => u.href.startsWith(`${spa.origin}/callback`));

      const tokens = await page.evaluate(() => (globalThis as unknown as { spa: { finishSignIn(): Promise<{ accessToken: string; refreshToken: string | null }> } }).spa.finishSignIn());
      expect(tokens.refreshToken).toEqual(expect.any(String));
      expect(await introspect(tokens.accessToken)).toBe(true);
      expect(await introspect(tokens.refreshToken as string)).toBe(true);

      const outcome = await page.evaluate(() => (globalThis as unknown as { spa: { revokeTokens(): Promise<string> } }).spa.revokeTokens());
      expect(outcome).toBe('resolved');
      expect(await introspect(tokens.accessToken)).toBe(false);
      expect(await introspect(tokens.refreshToken as string)).toBe(false);

      // Signing in again (the Tsunagi session still stands: straight back) and out with revokeTokensOnSignout.
      await page.goto(`${spa.origin}/`);
      await page.evaluate(() => { void (globalThis as unknown as { spa: { signIn(): Promise<void> } }).spa.signIn(); });
      await page.waitForURL((u) => u.href.startsWith(`${spa.origin}/callback`));
      const second = await page.evaluate(() => (globalThis as unknown as { spa: { finishSignIn(): Promise<{ accessToken: string; refreshToken: string | null }> } }).spa.finishSignIn());
      expect(await introspect(second.accessToken)).toBe(true);
      await page.evaluate(() => { void (globalThis as unknown as { spa: { signOut(): Promise<void> } }).spa.signOut(); });
      await page.waitForURL((u) => u.href.startsWith(`${issuer}/session/end`));
      expect(await introspect(second.accessToken)).toBe(false);
      expect(await introspect(second.refreshToken as string)).toBe(false);
    } finally {
      await page.close();
    }
  }, 120_000);

  it('answers a revocation with 200, no body and no Content-Type (RFC 7009 section 2.2), for an unknown token too', async () => {
    const res = await fetch(`${issuer}/token/revocation`, { ...form({ token: 'not-a-token-it-issued', client_id: clientId }), headers: { 'content-type': 'application/x-www-form-urlencoded', origin: spa.origin } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBeNull();
    expect(res.headers.get('access-control-allow-origin')).toBe(spa.origin);
    expect(await res.text()).toBe('');
  });
});
