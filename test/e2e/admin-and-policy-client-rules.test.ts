import type { RunningServer } from '../../src/server.js';
import { cli, startServerForCli } from '../support/cli.js';
import { describeBackends } from '../support/harness.js';
import type { IsolatedStore } from '../support/isolated-store.js';

// The client metadata of issue 15: upstream_policy (full | signin_only) is checked by `clients add`,
// dynamic registration and `clients lint`; admin scopes only come with `clients add --admin`, and
// `clients lint` reports any other client listing them. On a database of its own, so `clients lint`
// sees only what this file stored.

const INITIAL_ACCESS_TOKEN = 'p'.repeat(40);


describe(`upstream_policy and Admin API client rules (${describeBackends()})`, () => {
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

  const register = (body: Record<string, unknown>) => fetch(`${issuer}/reg`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${INITIAL_ACCESS_TOKEN}` }, body: JSON.stringify(body),
  });
  const stored = async (clientId: string) => (await server.services.db.pool.query<{ metadata: Record<string, unknown>; source: string }>(
    'SELECT metadata, source FROM clients WHERE client_id = $1', [clientId])).rows[0];

  it('dynamic registration takes upstream_policy full or signin_only, and refuses anything else with the reason', async () => {
    const ok = await register({ redirect_uris: ['https://wallet.example.test/cb'], upstream_policy: 'signin_only' });
    expect(ok.status).toBe(201);
    const created = (await ok.json()) as { client_id: string; upstream_policy: string };
    expect(created.upstream_policy).toBe('signin_only');
    expect((await stored(created.client_id))?.metadata.upstream_policy).toBe('signin_only');
    for (const bad of ['strict', true, ['signin_only']]) {
      const res = await register({ redirect_uris: ['https://wallet.example.test/cb'], upstream_policy: bad });
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({ error: 'invalid_client_metadata', error_description: 'upstream_policy must be one of full, signin_only' });
    }
  });

  it('`clients add` refuses a bad upstream_policy; --admin makes a client-credentials client with exactly the admin scopes', async () => {
    await expect(server.services.clients.add({ redirect_uris: ['https://wallet.example.test/cb'], upstream_policy: 'signin-only' }))
      .rejects.toMatchObject({ error: 'invalid_client_metadata', error_description: expect.stringMatching(/upstream_policy must be one of full, signin_only/) });

    const added = await cli(['clients', 'add', '-', '--admin', 'write'], env, JSON.stringify({ client_name: 'Support desk' }));
    expect(added.code).toBe(0);
    const { client_id: clientId, client_secret: secret } = JSON.parse(added.stdout) as { client_id: string; client_secret: string };
    expect(secret.length).toBeGreaterThanOrEqual(32);
    expect(await stored(clientId)).toMatchObject({
      source: 'admin', metadata: expect.objectContaining({ grant_types: ['client_credentials'], scope: 'admin:read admin:write' }),
    });
    const wrongFlag = await cli(['clients', 'add', '-', '--admin', 'root'], env, JSON.stringify({ client_name: 'Support desk' }));
    expect(wrongFlag.code).not.toBe(0);
    expect(wrongFlag.stderr).toMatch(/--admin read or --admin write/);
  }, 240_000);

  it('`clients lint` reports a stored client listing admin scopes without --admin, and a bad upstream_policy', async () => {
    const before = await cli(['clients', 'lint'], env);
    expect({ code: before.code, findings: JSON.parse(before.stdout) as unknown[] }).toEqual({ code: 0, findings: [] });
    // Rows edited by hand: an ordinary client given the admin scopes, a typo in upstream_policy.
    await server.services.db.pool.query(`INSERT INTO clients (client_id, metadata, source) VALUES ('hand-admin', $1, 'cli'), ('hand-policy', $2, 'dynamic')`, [
      { client_id: 'hand-admin', grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: 'admin:write' },
      { client_id: 'hand-policy', redirect_uris: ['https://wallet.example.test/cb'], upstream_policy: 'signin-only' },
    ]);
    const dirty = await cli(['clients', 'lint'], env);
    expect(dirty.code).toBe(1);
    expect(JSON.parse(dirty.stdout)).toEqual([
      expect.objectContaining({ client_id: 'hand-admin', violations: [expect.objectContaining({ rule: 'admin-scope' })] }),
      expect.objectContaining({ client_id: 'hand-policy', violations: [expect.objectContaining({ rule: 'upstream-policy' })] }),
    ]);
  }, 240_000);
});
