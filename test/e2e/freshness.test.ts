import * as oidc from 'openid-client';
import type { RunningServer } from '../../src/server.js';
import { SmtpSink } from '../fakes/smtp-sink.js';
import { Browser } from '../support/browserless.js';
import { describeBackends, startTestServer, uniqueEmail } from '../support/harness.js';
import { authorizationRequest, discover, RelyingPartyServer, signInWithEmail } from './support.js';

interface Signed { client: { id: string; secret: string }; access: string; refresh: string; sub: string; grantId: string }

// Tsunagi reads a token with its session, grant and account once per request and keeps nothing
// past it (src/oidc/adapter/request-scope.ts). So what changes between two requests (a grant
// revoked, an account deleted, a client removed) holds from the very next request on.
describe(`reads stay fresh from one request to the next (${describeBackends()})`, () => {
  let server: RunningServer;
  let sink: SmtpSink;
  let rp: RelyingPartyServer;
  let issuer: string;
  let redirectUri: string;

  // A busy machine can take a minute to start the embedded database and walk the sign-in pages.
  beforeAll(async () => {
    sink = new SmtpSink();
    const smtpUrl = await sink.start();
    rp = new RelyingPartyServer();
    redirectUri = `${await rp.start()}/cb`;
    server = await startTestServer({ SMTP_URL: smtpUrl });
    issuer = server.services.config.issuer;
  }, 180_000);

  afterAll(async () => {
    await server?.close();
    await sink?.close();
    await rp?.close();
  });

  /** A client of its own, a person signed in to it, and the tokens it got. */
  async function signIn(tag: string): Promise<Signed> {
    const added = await server.services.clients.add({
      client_name: `Freshness ${tag}`,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      first_party: true,
    });
    const client = { id: added.client_id as string, secret: added.client_secret as string };
    const config = await discover(server, client.id, client.secret);
    const req = await authorizationRequest(config, redirectUri, { scope: 'openid email' });
    const { callback } = await signInWithEmail(new Browser(), issuer, req.url, redirectUri, uniqueEmail(tag), sink);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    const sub = tokens.claims()?.sub as string;
    const { rows } = await server.services.db.pool.query<{ grant_id: string }>(
      `SELECT grant_id FROM oidc_payloads WHERE model = 'RefreshToken' AND id = $1`, [tokens.refresh_token]);
    return { client, access: tokens.access_token, refresh: tokens.refresh_token as string, sub, grantId: rows[0]?.grant_id as string };
  }

  async function refresh(s: Signed): Promise<{ status: number; error?: string }> {
    const res = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${encodeURIComponent(s.client.id)}:${encodeURIComponent(s.client.secret)}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: s.refresh }),
    });
    const body = (await res.json()) as { error?: string };
    return { status: res.status, ...(body.error ? { error: body.error } : {}) };
  }

  async function userinfo(s: Signed): Promise<{ status: number; error?: string }> {
    const res = await fetch(`${issuer}/me`, { headers: { authorization: `Bearer ${s.access}` } });
    const body = (await res.json()) as { error?: string };
    return { status: res.status, ...(body.error ? { error: body.error } : {}) };
  }

  it('refuses the refresh token and the access token of a grant revoked since the last request', async () => {
    const s = await signIn('grant');
    expect(await refresh(s)).toEqual({ status: 200 });
    expect(await userinfo(s)).toEqual({ status: 200 });

    // Only the grant goes (its tokens stay stored): the next requests must read it, not remember it.
    await server.services.host.current.Grant.adapter.destroy(s.grantId);

    expect(await refresh(s)).toEqual({ status: 400, error: 'invalid_grant' });
    expect(await userinfo(s)).toEqual({ status: 401, error: 'invalid_token' });
  }, 120_000);

  it('refuses the tokens of an account deleted since the last request', async () => {
    const s = await signIn('account');
    expect(await refresh(s)).toEqual({ status: 200 });
    expect(await userinfo(s)).toEqual({ status: 200 });

    await server.services.db.pool.query('DELETE FROM accounts WHERE id = $1', [s.sub]);

    expect(await refresh(s)).toEqual({ status: 400, error: 'invalid_grant' });
    expect(await userinfo(s)).toEqual({ status: 401, error: 'invalid_token' });
  }, 120_000);

  // Disabling also ends the grants; this sets only the flag, so what is checked is that every token
  // read (including the request-scoped prefetch of the account) sees it.
  it('refuses the tokens of an account disabled since the last request, even with its grant still in place', async () => {
    const s = await signIn('disabled');
    expect(await refresh(s)).toEqual({ status: 200 });
    expect(await userinfo(s)).toEqual({ status: 200 });

    await server.services.db.pool.query('UPDATE accounts SET disabled_at = now() WHERE id = $1', [s.sub]);

    expect(await refresh(s)).toEqual({ status: 400, error: 'invalid_grant' });
    expect(await userinfo(s)).toEqual({ status: 401, error: 'invalid_token' });
  }, 120_000);

  it('refuses the tokens of a client removed since the last request', async () => {
    const s = await signIn('client');
    expect(await refresh(s)).toEqual({ status: 200 });
    expect(await userinfo(s)).toEqual({ status: 200 });

    await server.services.clients.remove(s.client.id);

    expect(await refresh(s)).toEqual({ status: 401, error: 'invalid_client' });
    expect(await userinfo(s)).toEqual({ status: 401, error: 'invalid_token' });
  }, 120_000);
});
