import { createHash, randomBytes } from 'node:crypto';
import * as oidc from 'openid-client';
import { installRoundTripCounter } from '../../bench/round-trip-counter.js';
import { clientCacheFor } from '../../src/oidc/adapter/client-adapter.js';
import type { RunningServer } from '../../src/server.js';
import { SmtpSink } from '../fakes/smtp-sink.js';
import { Browser } from '../support/browserless.js';
import { describeBackends, startTestServer, uniqueEmail } from '../support/harness.js';
import { authorizationRequest, discover, RelyingPartyServer, signInWithEmail } from './support.js';

// Patched before the server opens its pool and Redis client: every query and command is counted.
const counter = installRoundTripCounter();

const withRedis = Boolean(process.env.REDIS_URL);
const withPostgresServer = Boolean(process.env.DATABASE_URL);

/**
 * The round trips each request makes, per backend. Tsunagi reads a token with the session, grant and
 * account it names in one query, once per request (src/oidc/adapter/related-prefetch.ts). A change
 * that adds a round trip to these requests fails here: if it is worth it, change the number and the
 * table in bench/results/latest.md with it.
 *
 * Without a Postgres server (the embedded database) there is no LISTEN connection, so client metadata
 * is read once per request (+1 query per request that names a client). Without Redis the losable
 * artifacts (access tokens, codes) are rows in Postgres too.
 */
const clientRead = withPostgresServer ? 0 : 1;
const EXPECTED = withRedis
  ? {
    // refresh token + its session, grant and account (1 query); the new access token (1 MULTI)
    refresh: { pg: 1 + clientRead, redis: 1 },
    // the access token (Redis); its session, grant and account (1 query)
    userinfo: { pg: 1 + clientRead, redis: 1 },
    // the value as an access token and as a client credentials token (Redis); the access token's
    // grant (1 query); not as a refresh token, since it was found as an access token
    introspection: { pg: 1 + clientRead, redis: 2 },
    // authorize: session + grant + account, grant save, session save; code (MULTI).
    // token: code (Redis), its session, grant and account, refresh token; consume + access token (Redis)
    sso: { pg: 5 + 2 * clientRead, redis: 4 },
  }
  : {
    // refresh token + related (1), the access token row (1)
    refresh: { pg: 2 + clientRead, redis: 0 },
    // the access token with its session, grant and account (1)
    userinfo: { pg: 1 + clientRead, redis: 0 },
    // the access token with its grant (1), the value as a client credentials token (1)
    introspection: { pg: 2 + clientRead, redis: 0 },
    // authorize: session + related, grant save, code, session save; token: code + related, consume, access token, refresh token
    sso: { pg: 8 + 2 * clientRead, redis: 0 },
  };

describe(`round trips per request (${describeBackends()})`, () => {
  let server: RunningServer;
  let sink: SmtpSink;
  let rp: RelyingPartyServer;
  let issuer: string;
  let redirectUri: string;
  let client: { id: string; secret: string };
  let tokens: { access: string; refresh: string };
  let cookie: string;

  // A busy machine can take a minute to start the embedded database and walk the sign-in pages.
  beforeAll(async () => {
    sink = new SmtpSink();
    const smtpUrl = await sink.start();
    rp = new RelyingPartyServer();
    redirectUri = `${await rp.start()}/cb`;
    // Signing-key reloads poll the database on a timer: keep them out of the counts.
    server = await startTestServer({ SMTP_URL: smtpUrl, KEYS_RELOAD_SECONDS: '86400' });
    issuer = server.services.config.issuer;
    // As the bench's clients: confidential, first party, refresh tokens that do not rotate.
    const added = await server.services.clients.add({
      client_name: 'Round-trip counter',
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      first_party: true,
    });
    client = { id: added.client_id as string, secret: added.client_secret as string };

    const config = await discover(server, client.id, client.secret);
    const req = await authorizationRequest(config, redirectUri, { scope: 'openid email' });
    const browser = new Browser();
    const { callback } = await signInWithEmail(browser, issuer, req.url, redirectUri, uniqueEmail('trips'), sink);
    const issued = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    tokens = { access: issued.access_token, refresh: issued.refresh_token as string };
    cookie = browser.jar.header();

    // With a Postgres server, client metadata is cached once its LISTEN connection is up.
    if (withPostgresServer) {
      const cache = clientCacheFor(server.services.db.pool);
      for (let i = 0; i < 300 && !cache.enabled; i++) await new Promise((r) => setTimeout(r, 100));
      expect(cache.enabled).toBe(true);
    }
  }, 180_000);

  afterAll(async () => {
    await server?.close();
    await sink?.close();
    await rp?.close();
  });

  const basic = () => `Basic ${Buffer.from(`${encodeURIComponent(client.id)}:${encodeURIComponent(client.secret)}`).toString('base64')}`;

  async function refresh(): Promise<void> {
    const res = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: { authorization: basic(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refresh }),
    });
    const body = (await res.json()) as { refresh_token?: string };
    expect(res.status).toBe(200);
    // The count below assumes the token does not rotate (a rotation adds its consume and a new token).
    expect(body.refresh_token ?? tokens.refresh).toBe(tokens.refresh);
  }

  async function userinfo(): Promise<void> {
    const res = await fetch(`${issuer}/me`, { headers: { authorization: `Bearer ${tokens.access}` } });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
  }

  async function introspection(): Promise<void> {
    const res = await fetch(`${issuer}/token/introspection`, {
      method: 'POST',
      headers: { authorization: basic(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: tokens.access }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ active: true, client_id: client.id });
  }

  async function ssoRoundTrip(): Promise<void> {
    const verifier = randomBytes(32).toString('base64url');
    const auth = new URL('/auth', issuer);
    auth.search = new URLSearchParams({
      client_id: client.id, response_type: 'code', scope: 'openid email', redirect_uri: redirectUri,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
      state: randomBytes(8).toString('base64url'), nonce: randomBytes(8).toString('base64url'),
    }).toString();
    const a = await fetch(auth, { redirect: 'manual', headers: { cookie } });
    await a.arrayBuffer();
    const code = new URL(a.headers.get('location') ?? 'x:/').searchParams.get('code');
    expect(a.status).toBe(303);
    expect(code).toEqual(expect.any(String));
    const res = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: { authorization: basic(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code: code as string, redirect_uri: redirectUri, code_verifier: verifier }),
    });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
  }

  /** Round trips of `times` requests, after one to warm up; what one sent is shown when it fails. */
  async function count(request: () => Promise<void>, times = 3) {
    await request();
    counter.reset();
    counter.tracing = true;
    for (let i = 0; i < times; i++) await request();
    counter.tracing = false;
    return { pg: counter.counts.pg / times, redis: counter.counts.redisTrips / times, sent: counter.trace.slice(0, counter.trace.length / times) };
  }

  it('refreshes reading the token, its session, grant and account in one Postgres query', async () => {
    const { sent, ...trips } = await count(refresh);
    expect({ trips, sent }).toEqual({ trips: EXPECTED.refresh, sent });
  });

  it('answers userinfo with one Postgres query for the session, grant and account of the access token', async () => {
    const { sent, ...trips } = await count(userinfo);
    expect({ trips, sent }).toEqual({ trips: EXPECTED.userinfo, sent });
  });

  it('introspects an access token without looking it up as a refresh token', async () => {
    const { sent, ...trips } = await count(introspection);
    expect({ trips, sent }).toEqual({ trips: EXPECTED.introspection, sent });
  });

  // The lookup above skips Postgres only for a value found as another kind of token: a refresh
  // token given without token_type_hint is still found, and a value that is no token is not.
  it('introspects a refresh token given without token_type_hint, and a value that is no token as inactive', async () => {
    const introspect = async (token: string, hint?: string) => {
      const res = await fetch(`${issuer}/token/introspection`, {
        method: 'POST',
        headers: { authorization: basic(), 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token, ...(hint ? { token_type_hint: hint } : {}) }),
      });
      expect(res.status).toBe(200);
      return (await res.json()) as Record<string, unknown>;
    };
    // oidc-provider gives an access token's token_type (Bearer) and none for a refresh token.
    const asRefresh = await introspect(tokens.refresh);
    expect(asRefresh).toMatchObject({ active: true, client_id: client.id });
    expect(asRefresh.token_type).toBeUndefined();
    expect(await introspect(tokens.refresh, 'access_token')).toMatchObject({ active: true, client_id: client.id });
    expect(await introspect(tokens.access, 'refresh_token')).toMatchObject({ active: true, token_type: 'Bearer' });
    expect(await introspect(randomBytes(32).toString('base64url'))).toEqual({ active: false });
  });

  it('makes an SSO round trip (authorize with session -> code -> token) with the counted round trips', async () => {
    const { sent, ...trips } = await count(ssoRoundTrip);
    expect({ trips, sent }).toEqual({ trips: EXPECTED.sso, sent });
  });
});
