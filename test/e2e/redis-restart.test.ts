import * as oidc from 'openid-client';
import { createClient } from 'redis';
import type { RunningServer } from '../../src/server.js';
import type { SmtpSink } from '../fakes/smtp-sink.js';
import { DisposableRedis } from '../support/disposable-redis.js';
import { Browser } from '../support/browserless.js';
import { uniqueEmail } from '../support/harness.js';
import { authorizationRequest, discover, signInWithEmail, startSpaFixture, type SpaFixture } from './support.js';

// Redis holds only what may be lost (README: "What survives a Redis restart"). This file starts a
// Redis of its own (the shared one is never flushed), so it runs on the embedded database as well.
describe(`a Redis flushed and restarted empty (${process.env.DATABASE_URL ? 'postgres' : 'embedded PGlite'} + a redis-server of this test's own)`, () => {
  let redis: DisposableRedis;
  let server: RunningServer;
  let sink: SmtpSink;
  let fixture: SpaFixture;
  let issuer: string;
  let redirectUri: string;
  let spaId: string;

  beforeAll(async () => {
    redis = await DisposableRedis.start();
    // A public SPA without offline_access: its refresh token ends with the browser session (OIDC
    // Core section 11), so it is the token a lost session would take with it.
    fixture = await startSpaFixture('SPA across a Redis restart', { REDIS_URL: redis.url });
    ({ server, sink, issuer, redirectUri, spaId } = fixture);
  });

  afterAll(async () => {
    await fixture?.close();
    await redis?.stop();
  });

  /** Flushes the test's Redis, kills it, starts it again empty, and waits until Tsunagi is reconnected. */
  async function flushAndRestartRedis(): Promise<void> {
    const admin = createClient({ url: redis.url });
    await admin.connect();
    expect(await admin.dbSize()).toBeGreaterThan(0); // the sign-in did put things there
    await admin.flushAll();
    await admin.quit();
    await redis.kill();
    await redis.launch();
    const check = createClient({ url: redis.url });
    await check.connect();
    expect(await check.dbSize()).toBe(0); // the restart really was empty
    await check.quit();
    const tsunagiRedis = server.services.redis;
    if (!tsunagiRedis) throw new Error('the server was started without Redis');
    if (!tsunagiRedis.isReady) await new Promise<void>((resolve) => tsunagiRedis.once('ready', () => resolve()));
  }

  const userinfo = (accessToken: string) => fetch(`${issuer}/me`, { headers: { authorization: `Bearer ${accessToken}` } });

  it('keeps the browser session and the refresh token; the lost access token gets a clean 401 and a refresh replaces it; signing out still ends them at once', async () => {
    const config = await discover(server, spaId, undefined, { token_endpoint_auth_method: 'none' });
    const browser = new Browser();
    const signIn = await authorizationRequest(config, redirectUri, { scope: 'openid email' });
    const { callback } = await signInWithEmail(browser, issuer, signIn.url, redirectUri, uniqueEmail('restart'), sink);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: signIn.verifier, expectedState: signIn.state, expectedNonce: signIn.nonce });
    const sub = tokens.claims()?.sub;
    expect(tokens.refresh_token).toEqual(expect.any(String));
    expect((await userinfo(tokens.access_token)).status).toBe(200);

    await flushAndRestartRedis();

    // The access token lived only in Redis: a clean 401 invalid_token, not a 500 or a hang.
    const lost = await userinfo(tokens.access_token);
    expect(lost.status).toBe(401);
    expect(lost.headers.get('www-authenticate')).toContain('error="invalid_token"');
    expect(((await lost.json()) as { error?: string }).error).toBe('invalid_token');

    // The client recovers by refreshing: the refresh token (and the session it is bound to) survived.
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token as string);
    expect(refreshed.claims()?.sub).toBe(sub);
    expect(refreshed.refresh_token).toEqual(expect.any(String));
    const again = await userinfo(refreshed.access_token);
    expect(again.status).toBe(200);
    expect(((await again.json()) as { sub?: string }).sub).toBe(sub);

    // The browser is still signed in: a silent SSO round trip gets a code without any login page.
    const silent = await authorizationRequest(config, redirectUri, { scope: 'openid email', prompt: 'none' });
    const back = await browser.follow(silent.url.href, {}, (u) => u.startsWith(redirectUri));
    const silentCallback = new URL(back.url);
    expect(silentCallback.searchParams.get('error')).toBeNull();
    expect(silentCallback.searchParams.get('code')).toEqual(expect.any(String));
    const ssoTokens = await oidc.authorizationCodeGrant(config, silentCallback, { pkceCodeVerifier: silent.verifier, expectedState: silent.state, expectedNonce: silent.nonce });
    expect(ssoTokens.claims()?.sub).toBe(sub);

    // And the rotated refresh token keeps working after all that.
    const later = await oidc.refreshTokenGrant(config, refreshed.refresh_token as string);
    expect((await userinfo(later.access_token)).status).toBe(200);

    // Nothing stale survives either: signing out ends the session and its refresh token at once.
    const endSession = oidc.buildEndSessionUrl(config, { id_token_hint: later.id_token as string });
    const confirm = await browser.follow(endSession.href);
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(confirm.body)?.[1];
    const action = /<form[^>]*id="op.logoutForm"[^>]*action="([^"]+)"|<form[^>]*action="([^"]+)"[^>]*id="op.logoutForm"/.exec(confirm.body);
    expect(xsrf).toBeDefined();
    const signedOut = await browser.follow(new URL((action?.[1] ?? action?.[2]) as string, issuer).href, { form: { xsrf: xsrf as string, logout: 'yes' } });
    expect(signedOut.res.status).toBe(200);
    const afterLogout = await authorizationRequest(config, redirectUri, { scope: 'openid email', prompt: 'none' });
    const refused = await browser.follow(afterLogout.url.href, {}, (u) => u.startsWith(redirectUri));
    expect(new URL(refused.url).searchParams.get('error')).toBe('login_required');
    await expect(oidc.refreshTokenGrant(config, later.refresh_token as string)).rejects.toMatchObject({ error: 'invalid_grant' });
  });
});
