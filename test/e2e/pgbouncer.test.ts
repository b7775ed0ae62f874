import * as oidc from 'openid-client';
import pg from 'pg';
import { clientCacheFor } from '../../src/oidc/adapter/client-adapter.js';
import type { RunningServer } from '../../src/server.js';
import { SmtpSink } from '../fakes/smtp-sink.js';
import { Browser } from '../support/browserless.js';
import { eventually } from '../support/faults.js';
import { startTestServer, uniqueEmail } from '../support/harness.js';
import { PgBouncer } from '../support/scale-servers.js';
import { authorizationRequest, discover, RelyingPartyServer, signInWithEmail, stillSignedIn } from './support.js';

// Tsunagi through PgBouncer in transaction pooling mode (Debian's pgbouncer, started here): two
// nodes whose every transaction may land on any of three server connections. Node A has
// DATABASE_DIRECT_URL for its LISTEN connection; node B has only the pooled URL, so its LISTEN hears
// nothing and its client cache must stay off rather than serve stale clients.

const DATABASE_URL = process.env.DATABASE_URL;
const describeWithPostgres = DATABASE_URL ? describe : describe.skip;
if (!DATABASE_URL) console.warn('DATABASE_URL not set: the PgBouncer tests did NOT run (PgBouncer needs a real Postgres)');

describeWithPostgres('Tsunagi through PgBouncer (transaction pooling)', () => {
  let bouncer: PgBouncer;
  let admin: pg.Client;
  let nodeA: RunningServer;
  let nodeB: RunningServer;
  const sink = new SmtpSink();
  const rp = new RelyingPartyServer();
  let redirectUri = '';
  let web: { id: string; secret: string };

  /** Transactions PgBouncer has carried to the test database so far (its admin console's SHOW STATS). */
  async function pooledTransactions(): Promise<number> {
    const { rows } = await admin.query<{ database: string; total_xact_count: string }>('SHOW STATS');
    return Number(rows.find((r) => r.database === new URL(DATABASE_URL as string).pathname.slice(1))?.total_xact_count ?? 0);
  }

  beforeAll(async () => {
    bouncer = await new PgBouncer(new URL(DATABASE_URL as string)).start();
    const adminUrl = new URL(bouncer.url);
    adminUrl.pathname = '/pgbouncer';
    admin = new pg.Client({ connectionString: adminUrl.href });
    await admin.connect();
    const smtpUrl = await sink.start();
    redirectUri = `${await rp.start()}/cb`;
    // Both nodes share everything but their database URL; the issuer is one (behind one load balancer).
    nodeA = await startTestServer({ SMTP_URL: smtpUrl, DATABASE_URL: bouncer.url, DATABASE_DIRECT_URL: DATABASE_URL });
    nodeB = await startTestServer({ SMTP_URL: smtpUrl, DATABASE_URL: bouncer.url, ISSUER: nodeA.services.config.issuer });
    const added = await nodeA.services.clients.add({
      client_name: 'Through PgBouncer', redirect_uris: [redirectUri], grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'], first_party: true,
    });
    web = { id: added.client_id as string, secret: added.client_secret as string };
  }, 120_000);

  afterAll(async () => {
    await nodeA?.close(0);
    await nodeB?.close(0);
    await admin?.end();
    await bouncer?.stop();
    await sink.close();
    await rp.close();
  });

  it('signs in by email code, exchanges the code, reads userinfo and refreshes, every query through PgBouncer', async () => {
    const before = await pooledTransactions();
    const config = await discover(nodeA, web.id, web.secret);
    const req = await authorizationRequest(config, redirectUri, { scope: 'openid email' });
    const browser = new Browser();
    const email = uniqueEmail('pgbouncer');
    const { callback } = await signInWithEmail(browser, nodeA.services.config.issuer, req.url, redirectUri, email, sink);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    expect(tokens.claims()?.email).toBe(email);
    const sub = tokens.claims()?.sub as string;
    expect((await oidc.fetchUserInfo(config, tokens.access_token, sub)).email).toBe(email);

    // Refresh many times in parallel on both nodes (different pools, shared server connections).
    const configB = await discover(nodeA, web.id, web.secret);
    // Both nodes serve one issuer (as behind a load balancer): requests of configB go to node B.
    configB[oidc.customFetch] = (url, options) => fetch(url.replace(nodeA.url, nodeB.url), options);
    const refreshes = await Promise.all(Array.from({ length: 12 }, (_, i) => oidc.refreshTokenGrant(i % 2 ? configB : config, tokens.refresh_token as string)));
    for (const r of refreshes) expect(r.claims()?.sub).toBe(sub);
    expect(await stillSignedIn(browser, config, redirectUri)).toBe(true);

    expect(await pooledTransactions()).toBeGreaterThan(before + 20);
    const { rows } = await admin.query<{ database: string; sv_active: string; sv_idle: string; sv_used: string }>('SHOW POOLS');
    const pool = rows.find((r) => r.database === new URL(DATABASE_URL as string).pathname.slice(1));
    // Two nodes with pools of 10 each were served by at most three server connections.
    expect(Number(pool?.sv_active) + Number(pool?.sv_idle) + Number(pool?.sv_used)).toBeLessThanOrEqual(3);
  }, 120_000);

  it('caches clients only where LISTEN reaches Postgres directly, and a change on one node is seen by the other', async () => {
    const cacheA = clientCacheFor(nodeA.services.db.pool);
    const cacheB = clientCacheFor(nodeB.services.db.pool);
    await eventually(async () => (cacheA.enabled ? true : undefined), 20_000, 'node A listening on the direct connection');
    // Node B's probe NOTIFY never reaches its LISTEN through PgBouncer: well after the probe's 5 s, still off.
    await new Promise((r) => setTimeout(r, 7_000));
    expect(cacheB.enabled).toBe(false);

    const tokenAt = (node: RunningServer, secret: string) => fetch(`${node.url}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${web.id}:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=refresh_token&refresh_token=not-a-token',
    });
    // A known client with a wrong refresh token gets invalid_grant; a wrong secret gets invalid_client.
    expect((await tokenAt(nodeA, web.secret)).status).toBe(400);
    expect(cacheA.get(web.id)).toBeDefined();

    // Node B rotates the secret: node A, which holds the client in memory, hears of it.
    const rotated = await nodeB.services.clients.rotateSecret(web.id);
    await eventually(async () => ((await tokenAt(nodeA, web.secret)).status === 401 ? true : undefined), 10_000, 'node A refusing the old secret');
    expect((await tokenAt(nodeA, rotated)).status).toBe(400);

    // Node A rotates it again: node B, which caches nothing, sees it on the next request.
    expect((await tokenAt(nodeB, rotated)).status).toBe(400);
    const again = await nodeA.services.clients.rotateSecret(web.id);
    expect((await tokenAt(nodeB, rotated)).status).toBe(401);
    expect((await tokenAt(nodeB, again)).status).toBe(400);
    web.secret = again;
  }, 120_000);
});
