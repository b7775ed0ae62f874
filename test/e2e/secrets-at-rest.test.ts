import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { jest } from '@jest/globals';
import * as oidc from 'openid-client';
import type pg from 'pg';
import { run } from '../../src/cli/main.js';
import { getOrCreateSecret } from '../../src/db/app-secrets.js';
import { openDatabase } from '../../src/db/database.js';
import { UnknownMasterKey } from '../../src/secrets/master-key.js';
import { migrate, readMigrations } from '../../src/db/migrate.js';
import { createLogger } from '../../src/logger.js';
import { sealSecretsAtRest } from '../../src/oidc/secrets-at-rest.js';
import type { RunningServer } from '../../src/server.js';
import { createServices, type Services } from '../../src/services.js';
import { SmtpSink } from '../fakes/smtp-sink.js';
import { Browser } from '../support/browserless.js';
import { describeBackends, startTestServer, testConfig, uniqueEmail } from '../support/harness.js';
import { RelyingPartyServer, authorizationRequest, discover, signInWithEmail } from './support.js';
import { isolatedStore, type IsolatedStore } from '../support/isolated-store.js';

// A database dump alone must not give what forges tokens, impersonates a client or recovers a code
// (issue 9, section 5). Each test gets a database no other test file writes to: a schema of its own
// on Postgres, an embedded database in a folder of its own otherwise.

/** Every row of every table, as JSON text: what someone holding a dump of the database reads. */
async function dumpTables(pool: pg.Pool): Promise<string> {
  const { rows: tables } = await pool.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`);
  const parts: string[] = [];
  for (const { table_name: table } of tables) {
    const { rows } = await pool.query<{ row: string }>(`SELECT row_to_json(t)::text AS row FROM "${table}" t`);
    parts.push(`-- ${table}`, ...rows.map((r) => r.row));
  }
  return parts.join('\n');
}

const PRIVATE_JWK_MEMBER = /"(d|p|q|dp|dq|qi)"\s*:/;

async function tokenEndpointError(issuer: string, body: string, headers: Record<string, string>): Promise<{ status: number; error: string | undefined }> {
  const res = await fetch(`${issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });
  const json = (await res.json()) as { error?: string };
  return { status: res.status, error: json.error };
}
const basic = (id: string, secret: string) => ({ authorization: `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}` });

describe(`secrets at rest after a full sign-in (${describeBackends()})`, () => {
  let store: IsolatedStore;
  let server: RunningServer;
  let sink: SmtpSink;
  let rp: RelyingPartyServer;
  let redirectUri: string;
  // Rows as a Tsunagi before migration 006 wrote them: all in plain text.
  const legacy = {
    kid: `legacy-${randomUUID()}`,
    pepper: randomBytes(32).toString('base64url'),
    salt: randomBytes(32).toString('base64url'),
    clientId: `legacy-client-${randomUUID()}`,
    clientSecret: randomBytes(32).toString('base64url'),
    privateD: '',
  };

  beforeAll(async () => {
    store = await isolatedStore();
    sink = new SmtpSink();
    rp = new RelyingPartyServer();
    redirectUri = `${await rp.start()}/cb`;
    const db = await openDatabase({ databaseUrl: store.env.DATABASE_URL, dataDir: store.dataDir, poolMax: 1 });
    try {
      await migrate(db.pool, readMigrations().filter((m) => m.version < 6));
      const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
      legacy.privateD = jwk.d as string;
      await db.pool.query(
        `INSERT INTO signing_keys (kid, alg, state, private_jwk, retired_at, retire_until) VALUES ($1, 'RS256', 'retired', $2, now(), now() + interval '1 hour')`,
        [legacy.kid, { ...jwk, kid: legacy.kid, alg: 'RS256', use: 'sig' }]);
      await db.pool.query(`INSERT INTO app_secrets (name, value) VALUES ('otp-pepper', $1), ('pairwise-salt', $2)`, [legacy.pepper, legacy.salt]);
      await db.pool.query(`INSERT INTO clients (client_id, metadata, source) VALUES ($1, $2, 'cli')`, [legacy.clientId, {
        client_id: legacy.clientId, client_secret: legacy.clientSecret, redirect_uris: [redirectUri],
        grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
      }]);
      // The plain rows are readable now: the dump check below is able to fail.
      const before = await dumpTables(db.pool);
      expect(before).toMatch(PRIVATE_JWK_MEMBER);
      expect(before).toContain(legacy.pepper);
      expect(before).toContain(legacy.clientSecret);
    } finally {
      await db.close();
    }
    server = await startTestServer({ ...store.env, SMTP_URL: await sink.start() });
    // Two starts of a database on disk (the embedded one is WebAssembly): slow on a busy machine.
  }, 180_000);

  afterAll(async () => {
    await server?.close();
    await sink?.close();
    await rp?.close();
    await store?.close();
  });

  it('leaves no private key, client secret, pepper, salt or other app secret readable in a dump of every table', async () => {
    const issuer = server.services.config.issuer;
    const added = await server.services.clients.add({
      client_name: 'Dumped shop', redirect_uris: [redirectUri], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
    });
    const jwtClient = await server.services.clients.add({
      client_name: 'JWT auth', grant_types: ['client_credentials'], response_types: [], redirect_uris: [], token_endpoint_auth_method: 'client_secret_jwt',
    });
    const config = await discover(server, added.client_id as string, added.client_secret as string);
    const req = await authorizationRequest(config, redirectUri, { scope: 'openid email offline_access', prompt: 'consent' });
    const { callback } = await signInWithEmail(new Browser(), issuer, req.url, redirectUri, uniqueEmail('dump'), sink);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token as string);
    expect(refreshed.claims()?.sub).toBe(tokens.claims()?.sub);

    const pool = server.services.db.pool;
    const { rows: names } = await pool.query<{ name: string }>('SELECT name FROM app_secrets ORDER BY name');
    expect(names.map((n) => n.name)).toEqual(expect.arrayContaining(['client-secret-hash-key', 'cookie-key', 'otp-pepper', 'pairwise-salt', 'upstream-token-key']));
    const appSecrets = await Promise.all(names.map((n) => getOrCreateSecret(pool, server.services.keyring, n.name)));
    // Converted in place: the values stay the same (pairwise subjects and pending codes survive the upgrade).
    expect(appSecrets).toEqual(expect.arrayContaining([legacy.pepper, legacy.salt]));

    const dump = await dumpTables(pool);
    expect(dump).not.toMatch(PRIVATE_JWK_MEMBER);
    expect(dump).not.toContain(legacy.privateD);
    for (const secret of [...appSecrets, added.client_secret as string, jwtClient.client_secret as string, legacy.clientSecret]) {
      expect(dump).not.toContain(secret);
    }
    expect(dump).toContain(legacy.kid);
    expect(dump).toMatch(/sealed:v1:/);
  }, 120_000);

  it('still serves the converted signing key in the JWKS and authenticates the converted client, refusing a wrong secret', async () => {
    const issuer = server.services.config.issuer;
    const jwks = (await (await fetch(`${issuer}/jwks`)).json()) as { keys: Array<Record<string, unknown>> };
    const published = jwks.keys.find((k) => k.kid === legacy.kid);
    expect(published).toMatchObject({ kty: 'RSA', alg: 'RS256' });
    expect(published).not.toHaveProperty('d');

    // An unknown refresh token: a right secret gets past client authentication to invalid_grant.
    const refresh = `grant_type=refresh_token&refresh_token=${randomBytes(32).toString('base64url')}`;
    expect(await tokenEndpointError(issuer, refresh, basic(legacy.clientId, legacy.clientSecret))).toEqual({ status: 400, error: 'invalid_grant' });
    expect(await tokenEndpointError(issuer, refresh, basic(legacy.clientId, `${legacy.clientSecret}x`))).toEqual({ status: 401, error: 'invalid_client' });
    const stored = await server.services.db.pool.query<{ secret: string }>(`SELECT metadata->>'client_secret' AS secret FROM clients WHERE client_id = $1`, [legacy.clientId]);
    // Someone who read the stored form cannot present it as the secret.
    expect(stored.rows[0]?.secret).toMatch(/^hmac-sha256:/);
    expect(await tokenEndpointError(issuer, refresh, basic(legacy.clientId, stored.rows[0]?.secret as string))).toEqual({ status: 401, error: 'invalid_client' });
  });

  it('authenticates client_secret_post and client_secret_jwt clients with their secret, and refuses a wrong one', async () => {
    const issuer = server.services.config.issuer;
    const post = await server.services.clients.add({
      client_name: 'Post auth', grant_types: ['client_credentials'], response_types: [], redirect_uris: [], token_endpoint_auth_method: 'client_secret_post',
    });
    const form = (secret: string) => new URLSearchParams({ grant_type: 'client_credentials', client_id: post.client_id as string, client_secret: secret }).toString();
    const ok = await fetch(`${issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form(post.client_secret as string) });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { access_token?: string }).access_token).toEqual(expect.any(String));
    expect(await tokenEndpointError(issuer, form('wrong-secret-0123456789abcdefghijklmnop'), {})).toEqual({ status: 401, error: 'invalid_client' });

    const jwt = await server.services.clients.add({
      client_name: 'JWT auth', grant_types: ['client_credentials'], response_types: [], redirect_uris: [], token_endpoint_auth_method: 'client_secret_jwt',
    });
    const withSecret = (secret: string) => oidc.discovery(new URL(issuer), jwt.client_id as string, { token_endpoint_auth_method: 'client_secret_jwt' },
      oidc.ClientSecretJwt(secret), { execute: [oidc.allowInsecureRequests] });
    const granted = await oidc.clientCredentialsGrant(await withSecret(jwt.client_secret as string));
    expect(granted.access_token).toEqual(expect.any(String));
    await expect(oidc.clientCredentialsGrant(await withSecret(randomBytes(32).toString('base64url')))).rejects.toMatchObject({ error: 'invalid_client' });
  }, 60_000);

  it('converts nothing twice, and keeps the embedded database\'s master key beside it, readable by the owner only', async () => {
    const { keyring, keys, clients, db } = server.services;
    expect(await sealSecretsAtRest(db.pool, { keyring, keys, clients }, false)).toEqual({ appSecrets: 0, signingKeys: 0, clientSecrets: 0 });
    const keyFile = path.join(store.dataDir, 'master.key');
    if (process.env.DATABASE_URL) {
      console.warn('secrets at rest: Postgres without TSUNAGI_MASTER_KEY uses the development key; the key file is checked on the embedded database');
      expect(fs.existsSync(keyFile)).toBe(false);
    } else {
      expect(keyring.source).toBe(keyFile);
      expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600);
    }
  });
});

describe(`master key rotation (${describeBackends()})`, () => {
  let store: IsolatedStore;
  const keyA = randomBytes(32).toString('base64');
  const keyB = randomBytes(32).toString('base64');
  const log = createLogger('silent');

  beforeAll(async () => {
    store = await isolatedStore();
    if (store.env.DATABASE_URL) {
      const db = await openDatabase({ databaseUrl: store.env.DATABASE_URL, dataDir: store.dataDir, poolMax: 1 });
      try { await migrate(db.pool); } finally { await db.close(); }
    }
  }, 120_000);
  afterAll(async () => { await store?.close(); });

  const configWith = (current: string, previous?: string) =>
    testConfig({ ...store.env, REDIS_URL: undefined, TSUNAGI_MASTER_KEY: current, TSUNAGI_MASTER_KEY_PREVIOUS: previous });
  async function withServices<T>(current: string, previous: string | undefined, fn: (s: Services) => Promise<T>): Promise<T> {
    const services = await createServices(configWith(current, previous), log);
    try { return await fn(services); } finally { await services.close(); }
  }
  type LoadedClient = { clientSecret?: string; compareClientSecret(secret: string): Promise<boolean> };
  const findClient = async (s: Services, id: string) => (await (s.host.current.Client as unknown as { find(id: string): Promise<LoadedClient | undefined> }).find(id)) as LoadedClient;

  it('opens everything with old + new keys, re-seals it under the new key, and then works with the new key alone', async () => {
    const before = await withServices(keyA, undefined, async (s) => {
      const basicClient = await s.clients.add({ client_name: 'Rotated basic', redirect_uris: ['https://rp.example.test/cb'] });
      const jwtClient = await s.clients.add({
        client_name: 'Rotated jwt', grant_types: ['client_credentials'], response_types: [], redirect_uris: [], token_endpoint_auth_method: 'client_secret_jwt',
      });
      return { basicClient, jwtClient, cookieKey: s.cookieKeys[0], kids: (await s.keys.load()).jwks.keys.map((k) => k.kid).sort() };
    });

    // The new key alone cannot open what the old one sealed: rotation needs both for a while.
    await expect(withServices(keyB, undefined, async () => undefined)).rejects.toBeInstanceOf(UnknownMasterKey);

    const written: string[] = [];
    const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => { written.push(String(chunk)); return true; });
    try {
      await run(['secrets', 'reencrypt'], configWith(keyB, keyA));
    } finally {
      spy.mockRestore();
    }
    const report = JSON.parse(written.join('')) as { resealed: { app_secrets: number; signing_keys: number; client_secrets: number } };
    expect(report.resealed.app_secrets).toBeGreaterThanOrEqual(5);
    expect(report.resealed.signing_keys).toBe(6);
    expect(report.resealed.client_secrets).toBe(1);

    await withServices(keyB, undefined, async (s) => {
      expect(s.cookieKeys[0]).toBe(before.cookieKey);
      expect((await s.keys.load()).jwks.keys.map((k) => k.kid).sort()).toEqual(before.kids);
      const basicClient = await findClient(s, before.basicClient.client_id as string);
      expect(await basicClient.compareClientSecret(before.basicClient.client_secret as string)).toBe(true);
      expect(await basicClient.compareClientSecret(`${before.basicClient.client_secret as string}x`)).toBe(false);
      expect((await findClient(s, before.jwtClient.client_id as string)).clientSecret).toBe(before.jwtClient.client_secret);
      // Re-encrypting again has nothing left to move.
      expect(await sealSecretsAtRest(s.db.pool, { keyring: s.keyring, keys: s.keys, clients: s.clients }, true))
        .toEqual({ appSecrets: 0, signingKeys: 0, clientSecrets: 0 });
    });

    // And the old key is no longer enough: nothing is left sealed with it.
    await expect(withServices(keyA, undefined, async () => undefined)).rejects.toBeInstanceOf(UnknownMasterKey);
  }, 300_000);
});
