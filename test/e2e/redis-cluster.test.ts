import { randomUUID } from 'node:crypto';
import * as oidc from 'openid-client';
import type { Database } from '../../src/db/database.js';
import { checkRedis, openRedis, type RedisConnection } from '../../src/db/redis.js';
import { RedisRateLimiter } from '../../src/limits/redis-rate-limiter.js';
import { createAdapterFactory } from '../../src/oidc/adapter/index.js';
import type { Adapter } from '../../src/oidc/adapter/types.js';
import { adapterContract } from '../integration/adapter-contract.js';
import { rateLimiterContract } from '../integration/rate-limiter-contract.js';
import { Browser } from '../support/browserless.js';
import { eventually } from '../support/faults.js';
import { describeBackends, openTestDatabase, uniqueEmail } from '../support/harness.js';
import { rawCommand, RedisClusterSet } from '../support/redis-topologies.js';
import { authorizationRequest, discover, requestEmailCodes, signInWithEmail, startSpaFixture, type SpaFixture } from './support.js';

// A Redis Cluster of three masters (no replicas), started by this test with redis-cli. Keys in
// different hash slots cannot share a MULTI or a script there (CROSSSLOT), and a script may not name
// a key it was not given: every Redis use of Tsunagi runs here as it does on one server.
const SETUP_MS = 180_000;

// The topology, not the database, is what these tests are about: CI runs them in its Postgres pass,
// and the embedded pass (the same suite again on PGlite) does not repeat them (minutes each).
const describeWithPostgres = process.env.DATABASE_URL ? describe : describe.skip;
if (!process.env.DATABASE_URL) console.warn('DATABASE_URL not set: the Redis Cluster tests did NOT run (they run with a real Postgres)');

describeWithPostgres(`Tsunagi on a Redis Cluster of three masters (${describeBackends().replace(' + redis', '')} + a cluster of this test's own)`, () => {
  let cluster: RedisClusterSet;
  let db: Database;
  let redis: RedisConnection;
  const prefix = `tsunagi-cluster-${randomUUID().slice(0, 8)}:`;

  let opening: Promise<RedisConnection> | undefined;
  beforeAll(async () => {
    cluster = await RedisClusterSet.start();
    // One seed node: the client learns the other two masters from it.
    opening = openRedis({ topology: 'cluster', nodes: [{ host: '127.0.0.1', port: cluster.nodes[0]?.port as number }], credentials: {} });
    redis = await opening;
    db = await openTestDatabase();
  }, SETUP_MS);
  afterAll(async () => {
    // Also a client still connecting when the set-up gave up: left open it would retry for ever.
    await (await opening?.catch(() => undefined))?.close().catch(() => undefined);
    await db?.close();
    await cluster?.stop();
  });

  describe('the adapter of short-lived models', () => {
    let adapterFor: (model: string) => Adapter;
    beforeAll(() => { adapterFor = createAdapterFactory(db.pool, redis, `${prefix}oidc:`); });

    adapterContract(
      { code: 'AuthorizationCode', session: 'Interaction', userCode: 'DeviceCode', token: 'AccessToken' },
      () => ({
        adapterFor,
        adapterWithGrace: (graceSeconds) => createAdapterFactory(db.pool, redis, `${prefix}oidc:`, { expiredGraceSeconds: graceSeconds }),
      }),
    );

    it('consumes a code after every node has forgotten its scripts (EVALSHA falls back to EVAL on NOSCRIPT)', async () => {
      for (const node of cluster.nodes) expect(await rawCommand(node.port, 'SCRIPT', 'FLUSH')).toBe('+OK\r\n');
      const id = randomUUID();
      await adapterFor('AuthorizationCode').upsert(id, { jti: id, grantId: randomUUID() }, 60);
      await adapterFor('AuthorizationCode').consume(id);
      expect((await adapterFor('AuthorizationCode').find(id))?.consumed).toEqual(expect.any(Number));
    });

    it('spreads its keys over all three masters (the cluster really shards them)', async () => {
      const perNode = await cluster.keysPerNode();
      expect(perNode).toHaveLength(3);
      for (const keys of perNode) expect(keys).toBeGreaterThan(0);
    });
  });

  describe('the rate limiter', () => {
    rateLimiterContract(() => new RedisRateLimiter(redis, `${prefix}rl:`));
  });

  describe('the whole server', () => {
    let fixture: SpaFixture;
    beforeAll(async () => {
      fixture = await startSpaFixture('SPA on a Redis Cluster', cluster.env);
    }, SETUP_MS);
    afterAll(async () => { await fixture?.close(); });

    const userinfo = (accessToken: string) => fetch(`${fixture.issuer}/me`, { headers: { authorization: `Bearer ${accessToken}` } });

    it('signs in by email code, refreshes, signs in again silently, and answers a replayed code by revoking what its grant issued', async () => {
      const { server, sink, issuer, redirectUri, spaId } = fixture;
      expect(server.services.config.redis?.topology).toBe('cluster');
      const config = await discover(server, spaId, undefined, { token_endpoint_auth_method: 'none' });
      const browser = new Browser();
      const signIn = await authorizationRequest(config, redirectUri, { scope: 'openid email' });
      const { callback } = await signInWithEmail(browser, issuer, signIn.url, redirectUri, uniqueEmail('cluster'), sink);
      const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: signIn.verifier, expectedState: signIn.state, expectedNonce: signIn.nonce });
      const sub = tokens.claims()?.sub;
      expect((await userinfo(tokens.access_token)).status).toBe(200);

      const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token as string);
      expect(refreshed.claims()?.sub).toBe(sub);
      expect((await userinfo(refreshed.access_token)).status).toBe(200);

      const silent = await authorizationRequest(config, redirectUri, { scope: 'openid email', prompt: 'none' });
      const back = await browser.follow(silent.url.href, {}, (u) => u.startsWith(redirectUri));
      const silentCallback = new URL(back.url);
      expect(silentCallback.searchParams.get('code')).toEqual(expect.any(String));
      const sso = await oidc.authorizationCodeGrant(config, silentCallback, { pkceCodeVerifier: silent.verifier, expectedState: silent.state, expectedNonce: silent.nonce });
      expect(sso.claims()?.sub).toBe(sub);
      expect((await userinfo(sso.access_token)).status).toBe(200);

      // The same code again: refused, and the access token its grant issued is revoked (its key and
      // the grant's list are in different slots).
      await expect(oidc.authorizationCodeGrant(config, silentCallback, { pkceCodeVerifier: silent.verifier, expectedState: silent.state, expectedNonce: silent.nonce }))
        .rejects.toMatchObject({ error: 'invalid_grant' });
      expect((await userinfo(sso.access_token)).status).toBe(401);
    });

    it('limits code sends per address with its counters in the cluster, and says when to try again', async () => {
      const { server, redirectUri, spaId, issuer } = fixture;
      const config = await discover(server, spaId, undefined, { token_endpoint_auth_method: 'none' });
      const { statuses, last } = await requestEmailCodes(config, redirectUri, issuer, uniqueEmail('cluster-limit'), 6);
      expect(statuses).toEqual([303, 303, 303, 303, 303, 429]);
      expect(last).toMatch(/try again in \d+ minutes/);
    });

    it('reports readiness per master: ready with all three, not ready (and 503, never 500) once one of them is gone', async () => {
      const { server } = fixture;
      const ready = await fetch(`${server.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(((await ready.json()) as { checks: Record<string, string> }).checks.redis).toBe('ok');
      await checkRedis(redis);

      const backend = await server.services.clients.add({ grant_types: ['client_credentials'], redirect_uris: [], response_types: [] });
      const token = () => fetch(`${server.url}/token`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${backend.client_id}:${backend.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials' }),
      });
      expect((await token()).status).toBe(200);

      await cluster.nodes[2]?.kill();
      await eventually(async () => ((await fetch(`${server.url}/readyz`)).status === 503 ? true : undefined), 30_000, '/readyz 503 with a master gone');
      const body = (await (await fetch(`${server.url}/readyz`)).json()) as { checks: Record<string, string> };
      expect(body.checks.redis).not.toBe('ok');
      // Each token's key lands on some master: a live one answers, the dead one's slots (and, once the
      // cluster marks itself failed, every slot) get 503 + Retry-After.
      const statuses: number[] = [];
      for (let i = 0; i < 12; i++) {
        const res = await token();
        statuses.push(res.status);
        if (res.status === 503) expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      }
      expect(statuses.every((s) => s === 200 || s === 503)).toBe(true);
      expect(statuses).toContain(503);
    });
  });
});
