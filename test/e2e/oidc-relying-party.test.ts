import { decodeJwt, decodeProtectedHeader, createRemoteJWKSet, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import type { RunningServer } from '../../src/server.js';
import { SmtpSink } from '../fakes/smtp-sink.js';
import { Browser, csrfOf, formAction } from '../support/browserless.js';
import { describeBackends, startTestServer, uniqueEmail } from '../support/harness.js';
import { RelyingPartyServer, authorizationRequest, discover, requestEmailCodes, signInWithEmail } from './support.js';

// openid-client (a certified relying party library) against a running Tsunagi, with codes read from
// a real SMTP server on loopback.
describe(`openid-client as a relying party (${describeBackends()})`, () => {
  let server: RunningServer;
  let sink: SmtpSink;
  let rp: RelyingPartyServer;
  let issuer: string;
  let redirectUri: string;
  let web: { id: string; secret: string };
  let spa: { id: string };

  beforeAll(async () => {
    sink = new SmtpSink();
    const smtpUrl = await sink.start();
    rp = new RelyingPartyServer();
    const origin = await rp.start();
    redirectUri = `${origin}/cb`;
    // The relying party listens on 127.0.0.1: back-channel logout may reach it only because it is allowed.
    server = await startTestServer({ SMTP_URL: smtpUrl, MAIL_FROM: 'Tsunagi <login@tsunagi.test>', OUTBOUND_ALLOW_PRIVATE: '127.0.0.1' });
    issuer = server.services.config.issuer;
    const added = await server.services.clients.add({
      client_name: 'Example Shop',
      redirect_uris: [redirectUri],
      post_logout_redirect_uris: [`${origin}/bye`],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      backchannel_logout_uri: `${origin}/backchannel`,
      backchannel_logout_session_required: true,
    });
    web = { id: added.client_id as string, secret: added.client_secret as string };
    const spaAdded = await server.services.clients.add({
      client_name: 'First-party SPA',
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: 'none',
      first_party: true,
      allowed_cors_origins: ['https://spa.example.test'],
    });
    spa = { id: spaAdded.client_id as string };
  });

  afterAll(async () => {
    await server?.close();
    await sink?.close();
    await rp?.close();
  });

  it('signs up by email code, then code + PKCE, ID token, userinfo, refresh, revoke and logout all work', async () => {
    const config = await discover(server, web.id, web.secret);
    const email = uniqueEmail('alice');
    const req = await authorizationRequest(config, redirectUri, { scope: 'openid email offline_access', prompt: 'consent' });
    const browser = new Browser();
    const { callback, trace } = await signInWithEmail(browser, issuer, req.url, redirectUri, email, sink);
    expect(trace.pages).toEqual(['login', 'code', 'signup', 'passkey-offer', 'consent']);

    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce, idTokenExpected: true });
    const claims = tokens.claims();
    expect(claims?.email).toBe(email);
    expect(claims?.email_verified).toBe(true);
    expect(claims?.amr).toEqual(['otp']);
    expect(claims?.acr).toBe('urn:tsunagi:loa:1');
    expect(decodeProtectedHeader(tokens.id_token as string).alg).toBe('RS256');
    expect(tokens.refresh_token).toEqual(expect.any(String));

    const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, claims?.sub as string);
    expect(userinfo.email).toBe(email);

    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token as string);
    expect(refreshed.access_token).not.toBe(tokens.access_token);
    expect(refreshed.claims()?.sub).toBe(claims?.sub);

    const before = await oidc.tokenIntrospection(config, refreshed.access_token);
    expect(before.active).toBe(true);
    await oidc.tokenRevocation(config, refreshed.access_token);
    const after = await oidc.tokenIntrospection(config, refreshed.access_token);
    expect(after.active).toBe(false);
    await expect(oidc.fetchUserInfo(config, refreshed.access_token, claims?.sub as string)).rejects.toThrow();

    // RP-initiated logout: a confirmation page, then back-channel logout to the client.
    const endSession = oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token as string, post_logout_redirect_uri: `${rp.origin}/bye`, state: 'bye-state' });
    const confirm = await browser.follow(endSession.href);
    expect(confirm.res.status).toBe(200);
    expect(confirm.body).toContain('Sign out?');
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(confirm.body)?.[1];
    const action = /<form[^>]*id="op.logoutForm"[^>]*action="([^"]+)"|<form[^>]*action="([^"]+)"[^>]*id="op.logoutForm"/.exec(confirm.body);
    expect(xsrf).toBeDefined();
    const done = await browser.request(new URL((action?.[1] ?? action?.[2]) as string, issuer).href, { form: { xsrf: xsrf as string, logout: 'yes' } });
    expect(done.res.status).toBe(303);
    expect(done.res.headers.get('location')).toBe(`${rp.origin}/bye?state=bye-state`);
    expect(rp.logoutTokens).toHaveLength(1);
    const logoutClaims = decodeJwt(rp.logoutTokens[0] as string);
    expect(logoutClaims.sub).toBe(claims?.sub);
    expect(logoutClaims.aud).toBe(web.id);

    // The session is gone: prompt=none now fails with login_required.
    const silent = await authorizationRequest(config, redirectUri, { prompt: 'none' });
    const silentResult = await browser.follow(silent.url.href, {}, (u) => u.startsWith(redirectUri));
    expect(new URL(silentResult.url).searchParams.get('error')).toBe('login_required');
  });

  it('signs an existing account straight in (no signup screen) and honours prompt=none and prompt=login', async () => {
    const config = await discover(server, web.id, web.secret);
    const email = uniqueEmail('bob');
    const first = new Browser();
    const r1 = await authorizationRequest(config, redirectUri);
    const one = await signInWithEmail(first, issuer, r1.url, redirectUri, email, sink);
    expect(one.trace.sawSignup).toBe(true);

    const second = new Browser();
    const r2 = await authorizationRequest(config, redirectUri);
    const two = await signInWithEmail(second, issuer, r2.url, redirectUri, email, sink);
    expect(two.trace.pages).toEqual(['login', 'code']);
    const t1 = await oidc.authorizationCodeGrant(config, one.callback, { pkceCodeVerifier: r1.verifier, expectedState: r1.state, expectedNonce: r1.nonce });
    const t2 = await oidc.authorizationCodeGrant(config, two.callback, { pkceCodeVerifier: r2.verifier, expectedState: r2.state, expectedNonce: r2.nonce });
    expect(t2.claims()?.sub).toBe(t1.claims()?.sub);

    // With a session, prompt=none returns a code without any screen.
    const r3 = await authorizationRequest(config, redirectUri, { prompt: 'none' });
    const silent = await second.follow(r3.url.href, {}, (u) => u.startsWith(redirectUri));
    const t3 = await oidc.authorizationCodeGrant(config, new URL(silent.url), { pkceCodeVerifier: r3.verifier, expectedState: r3.state, expectedNonce: r3.nonce });
    expect(t3.claims()?.sub).toBe(t1.claims()?.sub);

    // prompt=login shows the login page again even with a session.
    const r4 = await authorizationRequest(config, redirectUri, { prompt: 'login', login_hint: email });
    const login = await second.follow(r4.url.href, {}, (u) => u.startsWith(redirectUri));
    expect(login.body).toContain('name="email" type="email"');
    expect(login.body).toContain(`value="${email}"`);

    // max_age=0 forces a new sign-in too.
    const r5 = await authorizationRequest(config, redirectUri, { max_age: '0' });
    const again = await second.follow(r5.url.href, {}, (u) => u.startsWith(redirectUri));
    expect(again.body).toContain('name="email" type="email"');
  });

  it('skips consent for a first-party public client and rotates its refresh tokens', async () => {
    const config = await discover(server, spa.id, undefined, { token_endpoint_auth_method: 'none' });
    const browser = new Browser();
    const req = await authorizationRequest(config, redirectUri, { scope: 'openid email' });
    const { callback, trace } = await signInWithEmail(browser, issuer, req.url, redirectUri, uniqueEmail('spa'), sink);
    expect(trace.sawConsent).toBe(false);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    const rt1 = tokens.refresh_token as string;
    const rotated = await oidc.refreshTokenGrant(config, rt1);
    expect(rotated.refresh_token).toBeDefined();
    expect(rotated.refresh_token).not.toBe(rt1);

    // A second use of rt1 within REFRESH_TOKEN_REUSE_SECONDS (two tabs) still works; after it, the
    // reuse revokes the grant: both sides are in refresh-reuse.test.ts, on a clock the test sets.
    const secondTab = await oidc.refreshTokenGrant(config, rt1);
    expect(secondTab.refresh_token).not.toBe(rotated.refresh_token);
    await expect(oidc.refreshTokenGrant(config, rotated.refresh_token as string)).resolves.toMatchObject({ token_type: 'bearer' });
  });

  it('answers CORS only for the origins a public client registered', async () => {
    const preflight = (origin: string) => fetch(`${issuer}/token`, {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    const allowed = await preflight('https://spa.example.test');
    expect(allowed.headers.get('access-control-allow-origin')).toBe('https://spa.example.test');

    const tokenCall = (origin: string) => fetch(`${issuer}/token`, {
      method: 'POST',
      headers: { origin, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'nope', client_id: spa.id }).toString(),
    });
    const good = await tokenCall('https://spa.example.test');
    expect(good.headers.get('access-control-allow-origin')).toBe('https://spa.example.test');
    const evil = await tokenCall('https://evil.example.test');
    expect(evil.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('refuses a wrong redirect_uri with an error page and never redirects there', async () => {
    const config = await discover(server, web.id, web.secret);
    const req = await authorizationRequest(config, 'https://attacker.example.test/cb');
    const res = await new Browser().request(req.url.href);
    expect(res.res.status).toBe(400);
    expect(res.res.headers.get('location')).toBeNull();
    expect(res.body).toContain('redirect_uri');
  });

  it('requires PKCE (S256) for every code flow client', async () => {
    const config = await discover(server, web.id, web.secret);
    const url = oidc.buildAuthorizationUrl(config, { redirect_uri: redirectUri, scope: 'openid', state: 's1' });
    const res = await new Browser().request(url.href);
    const location = new URL(res.res.headers.get('location') as string);
    expect(location.origin + location.pathname).toBe(redirectUri);
    expect(location.searchParams.get('error')).toBe('invalid_request');
    expect(location.searchParams.get('error_description')).toMatch(/PKCE/);

    const plain = oidc.buildAuthorizationUrl(config, { redirect_uri: redirectUri, scope: 'openid', state: 's2', code_challenge: 'x'.repeat(43), code_challenge_method: 'plain' });
    const res2 = await new Browser().request(plain.href);
    expect(new URL(res2.res.headers.get('location') as string).searchParams.get('error')).toBe('invalid_request');
  });

  it('rejects a reused authorization code and revokes the tokens issued with it', async () => {
    const config = await discover(server, web.id, web.secret);
    const req = await authorizationRequest(config, redirectUri);
    const { callback } = await signInWithEmail(new Browser(), issuer, req.url, redirectUri, uniqueEmail('reuse'), sink);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    await expect(oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce }))
      .rejects.toMatchObject({ error: 'invalid_grant' });
    const introspected = await oidc.tokenIntrospection(config, tokens.access_token);
    expect(introspected.active).toBe(false);
  });

  it('issues ES256 ID tokens to a client that asks for them, verifiable with the published JWKS', async () => {
    const added = await server.services.clients.add({
      redirect_uris: [redirectUri], grant_types: ['authorization_code'], id_token_signed_response_alg: 'ES256', first_party: true,
    });
    const config = await discover(server, added.client_id as string, added.client_secret as string, { id_token_signed_response_alg: 'ES256' });
    const req = await authorizationRequest(config, redirectUri);
    const { callback } = await signInWithEmail(new Browser(), issuer, req.url, redirectUri, uniqueEmail('es'), sink);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    expect(decodeProtectedHeader(tokens.id_token as string).alg).toBe('ES256');
    const jwks = createRemoteJWKSet(new URL(`${issuer}/jwks`));
    const verified = await jwtVerify(tokens.id_token as string, jwks, { issuer, audience: added.client_id as string });
    expect(verified.payload.sub).toBe(tokens.claims()?.sub);
  });

  it('gives pairwise clients different subjects per sector, and never the account id', async () => {
    const localhostUri = redirectUri.replace('127.0.0.1', 'localhost');
    const sectorA = await server.services.clients.add({ redirect_uris: [redirectUri], subject_type: 'pairwise', first_party: true });
    const sectorB = await server.services.clients.add({ redirect_uris: [localhostUri], subject_type: 'pairwise', first_party: true });
    const email = uniqueEmail('pairwise');
    const browser = new Browser();
    const subs: string[] = [];
    for (const [client, uri] of [[sectorA, redirectUri], [sectorB, localhostUri]] as const) {
      const config = await discover(server, client.client_id as string, client.client_secret as string);
      const req = await authorizationRequest(config, uri);
      const { callback } = await signInWithEmail(browser, issuer, req.url, uri, email, sink);
      const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
      subs.push(tokens.claims()?.sub as string);
    }
    const account = await server.services.accounts.findAccountByVerifiedEmail({ address: email, key: email.toLowerCase() });
    expect(account).toBeDefined();
    expect(subs[0]).not.toBe(subs[1]);
    expect(subs).not.toContain(account?.id);

    const publicClient = await discover(server, web.id, web.secret);
    const req = await authorizationRequest(publicClient, redirectUri);
    const { callback } = await signInWithEmail(browser, issuer, req.url, redirectUri, email, sink);
    const tokens = await oidc.authorizationCodeGrant(publicClient, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    expect(tokens.claims()?.sub).toBe(account?.id);
  });

  it('issues client-credentials access tokens to a backend client', async () => {
    const added = await server.services.clients.add({ grant_types: ['client_credentials'], redirect_uris: [], response_types: [] });
    const config = await discover(server, added.client_id as string, added.client_secret as string);
    const tokens = await oidc.clientCredentialsGrant(config);
    expect(tokens.access_token).toEqual(expect.any(String));
    const introspected = await oidc.tokenIntrospection(config, tokens.access_token);
    expect(introspected.active).toBe(true);
    expect(introspected.client_id).toBe(added.client_id);

    // Another client learns nothing about a token that is not its own.
    const other = await server.services.clients.add({ grant_types: ['client_credentials'], redirect_uris: [], response_types: [] });
    const otherConfig = await discover(server, other.client_id as string, other.client_secret as string);
    expect((await oidc.tokenIntrospection(otherConfig, tokens.access_token)).active).toBe(false);
  });

  it('shows the login page in Japanese for ui_locales=ja', async () => {
    const config = await discover(server, web.id, web.secret);
    const req = await authorizationRequest(config, redirectUri, { ui_locales: 'ja' });
    const page = await new Browser().follow(req.url.href);
    expect(page.body).toContain('<html lang="ja">');
    expect(page.body).toContain('メールアドレス');
  });
});

describe(`sign-in errors change nothing (${describeBackends()})`, () => {
  let server: RunningServer;
  let sink: SmtpSink;
  let issuer: string;
  const redirectUri = 'http://127.0.0.1:9/cb';
  let clientId: string;
  let clientSecret: string;

  beforeAll(async () => {
    sink = new SmtpSink();
    server = await startTestServer({ SMTP_URL: await sink.start() });
    issuer = server.services.config.issuer;
    const added = await server.services.clients.add({ redirect_uris: [redirectUri], first_party: true });
    clientId = added.client_id as string;
    clientSecret = added.client_secret as string;
  });
  afterAll(async () => {
    await server?.close();
    await sink?.close();
  });

  async function codePage(browser: Browser, email: string) {
    const config = await discover(server, clientId, clientSecret);
    const req = await authorizationRequest(config, redirectUri);
    const login = await browser.follow(req.url.href);
    const code = await browser.follow(new URL(formAction(login.body, '/email'), issuer).href, { form: { _csrf: csrfOf(login.body), email } });
    expect(code.body).toContain('autocomplete="one-time-code"');
    return code;
  }

  it('refuses a wrong code, says how many tries are left, and creates no account', async () => {
    const email = uniqueEmail('wrong');
    const browser = new Browser();
    const page = await codePage(browser, email);
    const real = (await sink.nextMailTo(email)).text;
    const wrong = real.includes('000000') ? '111111' : '000000';
    const res = await browser.request(new URL(formAction(page.body, '/code'), issuer).href, { form: { _csrf: csrfOf(page.body), code: wrong } });
    expect(res.res.status).toBe(400);
    expect(res.body).toContain('4 tries left');
    expect(await server.services.accounts.findAccountByVerifiedEmail({ address: email, key: email })).toBeUndefined();
  });

  it('does not accept a code that was sent for another interaction', async () => {
    const email = uniqueEmail('cross');
    const a = new Browser();
    const b = new Browser();
    await codePage(a, email);
    const codeForA = (await sink.nextMailTo(email)).text.match(/\b\d{6}\b/)?.[0] as string;
    const pageB = await codePage(b, email);
    const codeForB = (await sink.nextMailTo(email)).text.match(/\b\d{6}\b/)?.[0] as string;
    // Paste A's code into B's interaction (unless the two random codes collide, which would not prove anything).
    if (codeForA === codeForB) return expect(codeForA).not.toBe(codeForB);
    const res = await b.request(new URL(formAction(pageB.body, '/code'), issuer).href, { form: { _csrf: csrfOf(pageB.body), code: codeForA } });
    expect(res.res.status).toBe(400);
    expect(res.body).toContain('not right');
    expect(await server.services.accounts.findAccountByVerifiedEmail({ address: email, key: email })).toBeUndefined();
  });

  it('refuses a form without its CSRF token', async () => {
    const email = uniqueEmail('csrf');
    const browser = new Browser();
    const page = await codePage(browser, email);
    const res = await browser.request(new URL(formAction(page.body, '/code'), issuer).href, { form: { code: '123456' } });
    expect(res.res.status).toBe(403);
    expect(res.body).toContain('This form has expired');
  });

  it('says plainly when the mail server is down and leaves nothing half-created', async () => {
    const email = uniqueEmail('smtpdown');
    const config = await discover(server, clientId, clientSecret);
    const req = await authorizationRequest(config, redirectUri);
    const browser = new Browser();
    const login = await browser.follow(req.url.href);
    sink.rejecting = true;
    try {
      const res = await browser.request(new URL(formAction(login.body, '/email'), issuer).href, { form: { _csrf: csrfOf(login.body), email } });
      expect(res.res.status).toBe(503);
      expect(res.body).toContain('We could not send the code');
    } finally {
      sink.rejecting = false;
    }
    const { rows } = await server.services.db.pool.query('SELECT count(*)::int AS n FROM otp_challenges WHERE target = $1 AND consumed_at IS NULL', [email]);
    expect(rows[0].n).toBe(0);
  });

  it('limits code sends per address and says when to try again', async () => {
    const config = await discover(server, clientId, clientSecret);
    const { statuses, last } = await requestEmailCodes(config, redirectUri, issuer, uniqueEmail('limit'), 6);
    expect(statuses).toEqual([303, 303, 303, 303, 303, 429]);
    expect(last).toMatch(/try again in \d+ minutes/);
  });
});
