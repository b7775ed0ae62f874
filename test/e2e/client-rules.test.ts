import { randomBytes } from 'node:crypto';
import type { RunningServer } from '../../src/server.js';
import { cli, startServerForCli } from '../support/cli.js';
import { describeBackends } from '../support/harness.js';
import type { IsolatedStore } from '../support/isolated-store.js';

// Clients a careful IdP refuses (issue 9, section 4): refused by dynamic registration and by the CLI
// with the reason, and reported by `clients lint` when a stored one breaks a rule. On a database of
// its own, so `clients lint` sees only what this file stored.

const INITIAL_ACCESS_TOKEN = 'i'.repeat(40);


describe(`client registration rules (${describeBackends()})`, () => {
  let store: IsolatedStore;
  let server: RunningServer;
  let env: Record<string, string | undefined>;
  let issuer: string;

  beforeAll(async () => {
    ({ store, server, issuer, env } = await startServerForCli({ INITIAL_ACCESS_TOKEN }));
  }, 180_000);
  afterAll(async () => {
    await server?.close();
    await store?.close();
  });

  const clientCount = async () => Number((await server.services.db.pool.query<{ n: string }>('SELECT count(*) AS n FROM clients')).rows[0]?.n);
  const register = (body: Record<string, unknown>) => fetch(`${issuer}/reg`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${INITIAL_ACCESS_TOKEN}` }, body: JSON.stringify(body),
  });

  it.each([
    ['client_credentials for a public client', { grant_types: ['client_credentials'], response_types: [], redirect_uris: [], token_endpoint_auth_method: 'none' }, 'invalid_client_metadata', /RFC 6749 section 4.4/],
    ['a wildcard redirect URI', { redirect_uris: ['https://*.rp.example.test/cb'] }, 'invalid_redirect_uri', /without wildcards/],
    ['a wildcard in the logo URI', { redirect_uris: ['https://rp.example.test/cb'], logo_uri: 'https://cdn.example.test/*.png' }, 'invalid_client_metadata', /logo_uri must list exact URIs/],
  ])('dynamic registration refuses %s with the reason, storing nothing', async (_name, body, error, description) => {
    const before = await clientCount();
    const res = await register(body);
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error, error_description: expect.stringMatching(description) });
    expect(await clientCount()).toBe(before);
  });

  it('registers a good client, keeps its secret hashed, never shows the stored form, and refuses an update that breaks a rule', async () => {
    const res = await register({ client_name: 'Dynamic', redirect_uris: ['https://rp.example.test/cb'], grant_types: ['authorization_code', 'refresh_token'] });
    expect(res.status).toBe(201);
    const created = (await res.json()) as { client_id: string; client_secret: string; registration_access_token: string; registration_client_uri: string };
    expect(created.client_secret.length).toBeGreaterThanOrEqual(32);
    const stored = await server.services.db.pool.query<{ secret: string }>(`SELECT metadata->>'client_secret' AS secret FROM clients WHERE client_id = $1`, [created.client_id]);
    expect(stored.rows[0]?.secret).toMatch(/^hmac-sha256:/);

    // The returned secret authenticates: past client authentication, an unknown refresh token is invalid_grant.
    const refresh = async (secret: string) => {
      const r = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${created.client_id}:${secret}`).toString('base64')}` },
        body: `grant_type=refresh_token&refresh_token=${randomBytes(32).toString('base64url')}`,
      });
      return ((await r.json()) as { error: string }).error;
    };
    expect(await refresh(created.client_secret)).toBe('invalid_grant');
    expect(await refresh('not-the-secret-0123456789abcdefghijkl')).toBe('invalid_client');

    const auth = { authorization: `Bearer ${created.registration_access_token}` };
    const read = await fetch(created.registration_client_uri, { headers: auth });
    expect(read.status).toBe(200);
    const readBody = (await read.json()) as { client_id: string; registration_access_token: string };
    expect(readBody.client_id).toBe(created.client_id);
    expect(JSON.stringify(readBody)).not.toContain('hmac-sha256:');

    const update = await fetch(created.registration_client_uri, {
      method: 'PUT', headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: created.client_id, client_name: 'Dynamic', redirect_uris: ['https://rp.example.test/*'], grant_types: ['authorization_code', 'refresh_token'] }),
    });
    expect(update.status).toBe(400);
    expect(await update.json()).toMatchObject({ error: 'invalid_redirect_uri', error_description: expect.stringMatching(/without wildcards/) });
    const after = await server.services.db.pool.query<{ redirect_uris: string[] }>(`SELECT metadata->'redirect_uris' AS redirect_uris FROM clients WHERE client_id = $1`, [created.client_id]);
    expect(after.rows[0]?.redirect_uris).toEqual(['https://rp.example.test/cb']);

    // An update that keeps the rules (RFC 7592: the secret left out) keeps the secret working.
    const renamed = await fetch(created.registration_client_uri, {
      method: 'PUT', headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: created.client_id, client_name: 'Renamed', redirect_uris: ['https://rp.example.test/cb'], grant_types: ['authorization_code', 'refresh_token'] }),
    });
    expect(renamed.status).toBe(200);
    const renamedBody = (await renamed.json()) as { registration_access_token: string };
    expect(JSON.stringify(renamedBody)).not.toContain('hmac-sha256:');
    expect(await refresh(created.client_secret)).toBe('invalid_grant');

    // Its secret is kept only as an HMAC, so it cannot turn into a client_secret_jwt key later.
    const toJwt = await fetch(created.registration_client_uri, {
      // The update rotated the registration access token.
      method: 'PUT', headers: { authorization: `Bearer ${renamedBody.registration_access_token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: created.client_id, redirect_uris: ['https://rp.example.test/cb'], token_endpoint_auth_method: 'client_secret_jwt' }),
    });
    expect(toJwt.status).toBe(400);
    expect(await toJwt.json()).toMatchObject({ error: 'invalid_client_metadata', error_description: expect.stringMatching(/stored hashed/) });
    expect(await refresh(created.client_secret)).toBe('invalid_grant');
  });

  it('the CLI refuses a client that breaks a rule, and `clients lint` reports stored ones with a non-zero exit', async () => {
    const refused = await cli(['clients', 'add', '-'], env, JSON.stringify({ client_id: 'tsunagi-account', redirect_uris: ['https://rp.example.test/cb'] }));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/client_id tsunagi-account is reserved for Tsunagi's own account page/);

    const clean = await cli(['clients', 'lint'], env);
    expect({ code: clean.code, findings: JSON.parse(clean.stdout) as unknown[] }).toEqual({ code: 0, findings: [] });

    // A row from before the rules (or edited by hand): kept, but reported.
    await server.services.db.pool.query(`INSERT INTO clients (client_id, metadata, source) VALUES ('old-machine', $1, 'cli')`, [{
      client_id: 'old-machine', client_name: 'Old machine', grant_types: ['client_credentials'], response_types: [], redirect_uris: [], token_endpoint_auth_method: 'none',
    }]);
    const dirty = await cli(['clients', 'lint'], env);
    expect(dirty.code).toBe(1);
    expect(JSON.parse(dirty.stdout)).toEqual([expect.objectContaining({
      client_id: 'old-machine', client_name: 'Old machine', violations: [expect.objectContaining({ rule: 'public-client-credentials' })],
    })]);
    expect(dirty.stderr).toMatch(/1 client\(s\) break a registration rule/);
  }, 240_000);
});
