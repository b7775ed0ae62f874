import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import type { RunningServer } from '../../src/server.js';
import { SmtpSink } from '../fakes/smtp-sink.js';
import { Browser } from '../support/browserless.js';
import { describeBackends, startTestServer, uniqueEmail } from '../support/harness.js';
import { RelyingPartyServer, authorizationRequest, discover, signInWithEmail } from './support.js';

// RFC 8707 resource indicators: a client asks for an access token meant for one of its
// allowed_resources and gets a JWT whose aud is that resource, verifiable against the JWKS alone.
describe(`JWT access tokens for a resource (${describeBackends()})`, () => {
  const BACKEND = 'https://api.shop.example.test/';
  const OTHER = 'https://other.example.test/';
  let server: RunningServer;
  let sink: SmtpSink;
  let rp: RelyingPartyServer;
  let issuer: string;
  let redirectUri: string;
  let jwks: ReturnType<typeof createRemoteJWKSet>;

  beforeAll(async () => {
    sink = new SmtpSink();
    rp = new RelyingPartyServer();
    redirectUri = `${await rp.start()}/cb`;
    server = await startTestServer({ SMTP_URL: await sink.start() });
    issuer = server.services.config.issuer;
    jwks = createRemoteJWKSet(new URL(`${issuer}/jwks`));
  });

  afterAll(async () => {
    await server?.close();
    await sink?.close();
    await rp?.close();
  });

  const addSpa = (extra: Record<string, unknown> = {}) => server.services.clients.add({
    client_name: 'Mini app', redirect_uris: [redirectUri], grant_types: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_method: 'none', first_party: true, allowed_resources: [BACKEND], ...extra,
  });

  it('issues a JWT access token with aud = the resource after code + PKCE, and keeps the audience on refresh', async () => {
    const added = await addSpa();
    const config = await discover(server, added.client_id as string, undefined, { token_endpoint_auth_method: 'none' });
    const req = await authorizationRequest(config, redirectUri, { resource: BACKEND });
    const { callback } = await signInWithEmail(new Browser(), issuer, req.url, redirectUri, uniqueEmail('resource'), sink);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce },
      { resource: BACKEND });
    const sub = tokens.claims()?.sub;

    expect(decodeProtectedHeader(tokens.access_token).typ).toBe('at+jwt');
    const { payload } = await jwtVerify(tokens.access_token, jwks, { issuer, audience: BACKEND, typ: 'at+jwt' });
    expect(payload.sub).toBe(sub);
    expect(payload.client_id).toBe(added.client_id);
    expect(payload.aud).toBe(BACKEND);
    const now = Math.floor(Date.now() / 1000);
    expect(payload.exp).toBeGreaterThan(now);
    expect(payload.exp).toBeLessThanOrEqual(now + server.services.config.ttl.accessToken + 5);
    // auth_time (RFC 9068) lets the resource server ask for a recent sign-in.
    expect(payload.auth_time).toBeGreaterThan(now - 60);
    expect(payload.auth_time).toBeLessThanOrEqual(now);

    // The same token is refused for any other audience.
    await expect(jwtVerify(tokens.access_token, jwks, { issuer, audience: OTHER })).rejects.toThrow(/aud/);

    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token as string);
    const again = await jwtVerify(refreshed.access_token, jwks, { issuer, audience: BACKEND });
    expect(again.payload.sub).toBe(sub);
    expect(again.payload.auth_time).toBe(payload.auth_time);
    expect(refreshed.access_token).not.toBe(tokens.access_token);
  });

  it('keeps opaque access tokens that work at userinfo when no resource is asked for', async () => {
    const added = await addSpa();
    const config = await discover(server, added.client_id as string, undefined, { token_endpoint_auth_method: 'none' });
    const email = uniqueEmail('plain');
    const req = await authorizationRequest(config, redirectUri);
    const { callback } = await signInWithEmail(new Browser(), issuer, req.url, redirectUri, email, sink);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    expect(() => decodeJwt(tokens.access_token)).toThrow();
    const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, tokens.claims()?.sub as string);
    expect(userinfo.email).toBe(email);
  });

  it('answers invalid_target for a resource the client is not allowed', async () => {
    const added = await addSpa();
    const config = await discover(server, added.client_id as string, undefined, { token_endpoint_auth_method: 'none' });
    const req = await authorizationRequest(config, redirectUri, { resource: OTHER });
    const res = await fetch(req.url, { redirect: 'manual' });
    const location = new URL(res.headers.get('location') as string);
    expect(location.href.startsWith(redirectUri)).toBe(true);
    expect(location.searchParams.get('error')).toBe('invalid_target');
  });

  it('issues a client-credentials JWT for an allowed resource and refuses an unlisted one', async () => {
    const added = await server.services.clients.add({
      grant_types: ['client_credentials'], redirect_uris: [], response_types: [], allowed_resources: [BACKEND],
    });
    const config = await discover(server, added.client_id as string, added.client_secret as string);
    const tokens = await oidc.clientCredentialsGrant(config, { resource: BACKEND });
    const { payload } = await jwtVerify(tokens.access_token, jwks, { issuer, audience: BACKEND, typ: 'at+jwt' });
    expect(payload.client_id).toBe(added.client_id);
    expect(payload.sub).toBe(added.client_id);

    const refused = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${added.client_id as string}:${added.client_secret as string}`).toString('base64')}` },
      body: new URLSearchParams({ grant_type: 'client_credentials', resource: OTHER }),
    });
    expect(refused.status).toBe(400);
    expect((await refused.json() as { error: string }).error).toBe('invalid_target');
  });

  it('refuses allowed_resources that are not absolute https URIs, and http off loopback', async () => {
    for (const bad of [['not a url'], ['ftp://api.example.test/'], ['https://api.example.test/#frag'], ['http://api.example.test/'], 'https://api.example.test/']) {
      await expect(addSpa({ allowed_resources: bad })).rejects.toMatchObject({ error: 'invalid_client_metadata', error_description: expect.stringMatching(/^allowed_resources must be/) });
    }
    // Loopback http is accepted outside production, so a backend can be developed locally.
    const local = await addSpa({ allowed_resources: ['http://127.0.0.1:8080/'] });
    expect(local.allowed_resources).toEqual(['http://127.0.0.1:8080/']);
  });
});
