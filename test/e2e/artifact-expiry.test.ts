import { jest } from '@jest/globals';
import * as oidc from 'openid-client';
import type { RunningServer } from '../../src/server.js';
import { DEVICE_CODE_GRANT } from '../../src/oidc/device-flow.js';
import { SmtpSink } from '../fakes/smtp-sink.js';
import { Browser, csrfOf, formAction } from '../support/browserless.js';
import { describeBackends, startTestServer, uniqueEmail } from '../support/harness.js';
import { authorizationRequest, discover, signInWithEmail } from './support.js';

const REDIRECT = 'http://127.0.0.1:9/cb';
const INTERACTION_TTL = 300;
const REFRESH_TOKEN_TTL = 300;
const AUTHORIZATION_CODE_TTL = 60;
const DEVICE_CODE_TTL = 600;

// What a client and a person are told when something they hold has expired: the error the
// specification names (RFC 8628 expired_token, RFC 6749 invalid_grant for an expired code or
// refresh token) and a readable page for a sign-in that took too long, never "unknown".
// Time moves by a clock the test controls: this process's Date.now, which oidc-provider, the
// adapters and openid-client all read. The stores' own clocks do not move, so this shows what
// oidc-provider answers once it sees the artifact as expired; that the stores keep an expired
// artifact findable by their own clocks is shown with real lifetimes in test/integration/adapter-contract.ts.
describe(`expired artifacts get the error the specification names (${describeBackends()})`, () => {
  let server: RunningServer;
  let sink: SmtpSink;
  let issuer: string;
  let client: oidc.Configuration;
  let clientId: string;
  const realNow = Date.now.bind(Date);
  let offsetMs = 0;
  const advance = (seconds: number) => { offsetMs += seconds * 1000; };
  const grantErrors: { error?: string; error_detail?: string }[] = [];

  beforeAll(async () => {
    jest.spyOn(Date, 'now').mockImplementation(() => realNow() + offsetMs);
    sink = new SmtpSink();
    server = await startTestServer({ SMTP_URL: await sink.start(), INTERACTION_TTL: String(INTERACTION_TTL), REFRESH_TOKEN_TTL: String(REFRESH_TOKEN_TTL) });
    issuer = server.services.config.issuer;
    const added = await server.services.clients.add({
      client_name: 'Expiry app', redirect_uris: [REDIRECT], first_party: true,
      grant_types: ['authorization_code', 'refresh_token', DEVICE_CODE_GRANT], response_types: ['code'],
    });
    clientId = added.client_id as string;
    client = await discover(server, clientId, added.client_secret as string);
    (server.services.host.current as unknown as NodeJS.EventEmitter).on('grant.error', (_ctx: unknown, err: { error?: string; error_detail?: string }) => {
      grantErrors.push({ error: err.error, error_detail: err.error_detail });
    });
  }, 120_000);

  afterAll(async () => {
    jest.restoreAllMocks();
    await server?.close();
    await sink?.close();
  });

  async function signIn(scope = 'openid email offline_access') {
    const req = await authorizationRequest(client, REDIRECT, { scope, prompt: 'consent' });
    const { callback } = await signInWithEmail(new Browser(), issuer, req.url, REDIRECT, uniqueEmail('expiry'), sink);
    return { req, callback };
  }
  const lastGrantError = () => grantErrors.at(-1);

  it('answers invalid_grant for an authorization code redeemed after its lifetime, because it expired (RFC 6749 section 5.2)', async () => {
    const { req, callback } = await signIn();
    advance(AUTHORIZATION_CODE_TTL + 1);
    await expect(oidc.authorizationCodeGrant(client, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce }))
      .rejects.toMatchObject({ error: 'invalid_grant' });
    expect(lastGrantError()).toEqual({ error: 'invalid_grant', error_detail: 'authorization code is expired' });
  });

  it('answers invalid_grant for a refresh token used after its lifetime, because it expired', async () => {
    const { req, callback } = await signIn();
    const tokens = await oidc.authorizationCodeGrant(client, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    expect(tokens.refresh_token).toBeTruthy();
    // Still good just before its end.
    advance(REFRESH_TOKEN_TTL - 30);
    const refreshed = await oidc.refreshTokenGrant(client, tokens.refresh_token as string);
    advance(REFRESH_TOKEN_TTL + 1);
    await expect(oidc.refreshTokenGrant(client, refreshed.refresh_token as string)).rejects.toMatchObject({ error: 'invalid_grant' });
    expect(lastGrantError()).toEqual({ error: 'invalid_grant', error_detail: 'refresh token is expired' });
  });

  it('tells a person whose sign-in took too long to start again, in English and Japanese', async () => {
    const req = await authorizationRequest(client, REDIRECT, { scope: 'openid email' });
    const browser = new Browser();
    const login = await browser.follow(req.url.href);
    expect(login.body).toContain('name="email" type="email"');
    // oidc-provider allows 5 seconds of clock tolerance on an interaction's expiry.
    advance(INTERACTION_TTL + 10);

    const submitted = await browser.follow(new URL(formAction(login.body, '/email'), issuer).href, { form: { _csrf: csrfOf(login.body), email: uniqueEmail('slow') } });
    expect(submitted.res.status).toBe(400);
    expect(submitted.body).toContain('This sign-in took too long');
    const again = await browser.follow(`${new URL(formAction(login.body, '/email'), issuer).href.replace(/\/email$/, '')}?lang=ja`);
    expect(again.res.status).toBe(400);
    expect(again.body).toContain('ログインに時間がかかりすぎたため');
    // Back at the authorization endpoint's resume URL of that sign-in (in the language just chosen):
    // the same message, not one blaming the application.
    const uid = /\/interaction\/([^/"]+)\/email/.exec(login.body)?.[1] as string;
    const resumed = await browser.follow(`${issuer}/auth/${uid}`);
    expect(resumed.res.status).toBe(400);
    expect(resumed.body).toContain('ログインに時間がかかりすぎたため');
  });

  it('answers expired_token to a client polling an expired device code, and says so on the page for its user code', async () => {
    const started = await fetch(`${issuer}/device/auth`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${clientId}:${client.clientMetadata().client_secret as string}`).toString('base64')}` },
      body: new URLSearchParams({ scope: 'openid' }),
    });
    expect(started.status).toBe(200);
    const device = await started.json() as { device_code: string; user_code: string; expires_in: number };
    expect(device.expires_in).toBe(DEVICE_CODE_TTL);
    const poll = async () => {
      const res = await fetch(`${issuer}/token`, {
        method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${clientId}:${client.clientMetadata().client_secret as string}`).toString('base64')}` },
        body: new URLSearchParams({ grant_type: DEVICE_CODE_GRANT, device_code: device.device_code }),
      });
      return { status: res.status, json: await res.json() as Record<string, unknown> };
    };
    expect((await poll()).json.error).toBe('authorization_pending');

    advance(DEVICE_CODE_TTL + 1);
    expect(await poll()).toEqual({ status: 400, json: expect.objectContaining({ error: 'expired_token' }) });

    const browser = new Browser();
    const input = await browser.follow(`${issuer}/device`);
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(input.body)?.[1] as string;
    const typed = await browser.follow(`${issuer}/device`, { form: { xsrf, user_code: device.user_code } });
    expect(typed.res.status).toBe(200);
    expect(typed.body).toContain('That code has expired');
    expect(typed.body).not.toContain('name="confirm"');
  });
});
