import { randomUUID } from 'node:crypto';
import type { Account } from '../../src/accounts/account-store.js';
import { parseEmailAddress } from '../../src/accounts/email-address.js';
import { getOrCreateSecret } from '../../src/db/app-secrets.js';
import { withTransaction } from '../../src/db/database.js';
import { ADMIN_API_RATE_LIMIT, adminApiRoutes } from '../../src/http/admin-api.js';
import type { RunningServer } from '../../src/server.js';
import { pairwiseSubject } from '../../src/oidc/subject.js';
import { describeBackends, startTestServer, uniqueEmail } from '../support/harness.js';

interface TestClient { id: string; secret: string }
type Body = Record<string, unknown>;

const INITIAL_ACCESS_TOKEN = 'a'.repeat(40);
const GOOGLE = 'https://accounts.google.test';

// The Admin API against a real Tsunagi: who may call it (only clients added with --admin, with the
// scope the operation needs), every operation, every refusal, the audit trail, the rate limit, and
// that the OpenAPI document lists exactly the routes there are.
describe(`Admin API (${describeBackends()})`, () => {
  let server: RunningServer;
  let issuer: string;
  let api: string;
  let reader: TestClient;
  let writer: TestClient;
  let ordinary: TestClient;
  let exporter: TestClient;

  beforeAll(async () => {
    server = await startTestServer({ INITIAL_ACCESS_TOKEN });
    issuer = server.services.config.issuer;
    api = `${issuer}/admin/api/v1`;
    reader = await addClient({ client_name: 'Support (read)' }, 'read');
    writer = await addClient({ client_name: 'Support (write)' }, 'write');
    ordinary = await addClient({ client_name: 'Shop backend', grant_types: ['client_credentials'], response_types: [], redirect_uris: [] });
    exporter = await addClient({ client_name: 'Mini app backend', grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: 'tsunagi:export' });
  }, 180_000);
  afterAll(async () => { await server?.close(); });

  async function addClient(metadata: Body, admin?: 'read' | 'write'): Promise<TestClient> {
    const added = await server.services.clients.add(metadata, admin ? { admin } : {});
    return { id: added.client_id as string, secret: added.client_secret as string };
  }
  async function tokenRequest(client: TestClient, scope: string) {
    const res = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}` },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope }),
    });
    return { status: res.status, body: (await res.json()) as Body };
  }
  async function tokenFor(client: TestClient, scope: string): Promise<string> {
    const r = await tokenRequest(client, scope);
    if (r.status !== 200) throw new Error(`token: ${JSON.stringify(r.body)}`);
    return r.body.access_token as string;
  }
  async function call(method: string, path: string, token?: string, body?: unknown) {
    const res = await fetch(`${api}${path}`, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : {}) as Body };
  }
  const read = async () => tokenFor(reader, 'admin:read');
  const write = async () => tokenFor(writer, 'admin:read admin:write');

  async function account(opts: { email?: string; phone?: string; google?: string } = {}): Promise<Account> {
    const { accounts, identities, db } = server.services;
    const created = await withTransaction(db.pool, async (tx) => {
      const email = opts.email ? parseEmailAddress(opts.email) : undefined;
      const a = email ? await accounts.createAccountWithVerifiedEmail(tx, email, 'Support Case') : await accounts.createAccount(tx, 'Support Case');
      if (opts.phone) await accounts.addVerifiedPhone(tx, a.id, opts.phone);
      return a;
    });
    if (opts.google) {
      await identities.link(undefined, created.id, { provider: 'google', issuer: GOOGLE, subject: opts.google, email: opts.email ?? null, emailVerified: true, isPrivateEmail: false });
    }
    return created;
  }
  const auditRows = async (filter: { type: string; accountId?: string; clientId?: string }) => (await server.services.db.pool.query<{ client_id: string | null; data: Body }>(
    `SELECT client_id, data FROM audit_events WHERE type = $1 AND ($2::uuid IS NULL OR account_id = $2) AND ($3::text IS NULL OR client_id = $3) ORDER BY created_at`,
    [filter.type, filter.accountId ?? null, filter.clientId ?? null])).rows;
  /** A browser session of the account, stored as oidc-provider stores one (its id is the session cookie's value). */
  async function sessionOf(accountId: string): Promise<string> {
    const id = `sess-${randomUUID()}`;
    const loginTs = Math.floor(Date.now() / 1000);
    await server.services.db.pool.query(
      `INSERT INTO oidc_payloads (model, id, payload, uid, expires_at) VALUES ('Session', $1, $2, $3, now() + interval '1 hour')`,
      [id, { jti: id, uid: `uid-${randomUUID()}`, kind: 'Session', accountId, loginTs, amr: ['otp'], authorizations: {}, exp: loginTs + 3600, iat: loginTs }, `uid-${id}`]);
    return id;
  }
  const uniquePhone = () => `+8190${String(Math.floor(Math.random() * 1e8)).padStart(8, '0')}`;

  describe('who may call it', () => {
    it('refuses a call without a token, or with an unknown one, as 401 with WWW-Authenticate', async () => {
      const none = await call('GET', '/accounts?email=a@example.test');
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toBe('Bearer realm="tsunagi-admin"');
      expect(none.body).toMatchObject({ error: 'invalid_token' });
      const bad = await call('GET', '/accounts?email=a@example.test', 'not-a-token');
      expect(bad.status).toBe(401);
      expect(bad.headers.get('www-authenticate')).toBe('Bearer realm="tsunagi-admin", error="invalid_token"');
      // A malformed body from someone without a token is still a 401, and changes nothing.
      expect((await call('POST', `/accounts/${randomUUID()}/disable`, undefined, '{oops')).status).toBe(401);
    });

    it('never gives an ordinary client an admin scope: not by the token endpoint, the CLI without --admin, or dynamic registration', async () => {
      for (const scope of ['admin:read', 'admin:write', 'openid admin:read']) {
        expect(await tokenRequest(ordinary, scope)).toMatchObject({ status: 400, body: { error: 'invalid_scope' } });
      }
      // A read-only admin client cannot widen its own scope either.
      expect(await tokenRequest(reader, 'admin:write')).toMatchObject({ status: 400, body: { error: 'invalid_scope' } });
      await expect(server.services.clients.add({ client_name: 'Sneaky', grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: 'admin:read' }))
        .rejects.toMatchObject({ error: 'invalid_client_metadata', error_description: expect.stringMatching(/only for Admin API clients the operator registers/) });
      // --admin is for machines only: not with a redirect (a person's sign-in) flow.
      await expect(addClient({ client_name: 'Admin with a browser flow', grant_types: ['authorization_code', 'client_credentials'], redirect_uris: ['https://rp.example.test/cb'], response_types: ['code'] }, 'read'))
        .rejects.toMatchObject({ error: 'invalid_client_metadata', error_description: expect.stringMatching(/client credentials only/) });
      const reg = await fetch(`${issuer}/reg`, {
        method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${INITIAL_ACCESS_TOKEN}` },
        body: JSON.stringify({ grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: 'admin:read admin:write' }),
      });
      expect(reg.status).toBe(400);
      expect(await reg.json()).toMatchObject({ error: 'invalid_client_metadata', error_description: expect.stringMatching(/clients add --admin/) });
    });

    it('refuses a token without the scope the operation needs as 403, naming the scope, and audits it with the client id', async () => {
      const id = (await account({ email: uniqueEmail('scope') })).id;
      const res = await call('POST', `/accounts/${id}/disable`, await read());
      expect(res.status).toBe(403);
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="tsunagi-admin", error="insufficient_scope", scope="admin:write"');
      expect(res.body).toMatchObject({ error: 'insufficient_scope', scope: 'admin:write' });
      expect((await server.services.accounts.findAccountById(id))?.disabledAt).toBeNull();
      // Another client's client-credentials token (the export's) is no admin token.
      const exportToken = await tokenFor(exporter, 'tsunagi:export');
      expect(await call('GET', `/accounts/${id}`, exportToken)).toMatchObject({ status: 403, body: { scope: 'admin:read' } });
      const refused = await auditRows({ type: 'admin_api_refused', clientId: reader.id });
      expect(refused.at(-1)?.data).toMatchObject({ operation: 'disableAccount', status: 403, reason: 'insufficient_scope', actor: `admin:${reader.id}` });
    });

    it('stops a removed client\'s tokens at once (401)', async () => {
      const gone = await addClient({ client_name: 'Temporary support tool' }, 'read');
      const token = await tokenFor(gone, 'admin:read');
      expect((await call('GET', '/accounts?email=nobody@example.test', token)).status).toBe(200);
      await server.services.clients.remove(gone.id);
      expect((await call('GET', '/accounts?email=nobody@example.test', token)).status).toBe(401);
    });

    it('rate-limits each client (429 with Retry-After), not the others', async () => {
      const busy = await addClient({ client_name: 'Runaway script' }, 'read');
      const token = await tokenFor(busy, 'admin:read');
      // Fill this minute's window, then call; if the window turned over in between, fill the new one.
      let res;
      for (let attempt = 0; attempt < 3; attempt += 1) {
        for (;;) if (!(await server.services.limiter.hit(ADMIN_API_RATE_LIMIT, busy.id)).allowed) break;
        res = await call('GET', '/accounts?email=nobody@example.test', token);
        if (res.status === 429) break;
      }
      expect(res?.status).toBe(429);
      expect(Number(res?.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(res?.body).toMatchObject({ error: 'rate_limited' });
      expect((await call('GET', '/accounts?email=nobody@example.test', await read())).status).toBe(200);
    });
  });

  describe('operations', () => {
    it('finds an account by email, phone, sub, a client\'s pairwise sub, and upstream identity; nothing for an unknown one', async () => {
      const email = uniqueEmail('find');
      const phone = uniquePhone();
      const googleSub = `g-${randomUUID()}`;
      const a = await account({ email, phone, google: googleSub });
      const token = await read();
      const found = (query: string) => call('GET', `/accounts?${query}`, token);
      for (const query of [
        new URLSearchParams({ email: email.toUpperCase() }), new URLSearchParams({ phone }), new URLSearchParams({ sub: a.id }),
        new URLSearchParams({ issuer: GOOGLE, subject: googleSub }),
      ]) {
        const res = await found(query.toString());
        expect(res.status).toBe(200);
        expect(res.body.accounts).toEqual([expect.objectContaining({ id: a.id, primaryEmail: email, phones: [phone], providers: ['google'] })]);
      }
      // A pairwise client's sub for the account.
      const pairwise = await server.services.clients.add({ client_name: 'Pairwise RP', redirect_uris: ['https://pairwise.example.test/cb'], subject_type: 'pairwise' });
      const client = await server.services.host.current.Client.find(pairwise.client_id as string);
      const salt = await getOrCreateSecret(server.services.db.pool, server.services.keyring, 'pairwise-salt');
      const sub = pairwiseSubject(client?.sectorIdentifier as string | undefined, a.id, salt);
      expect(sub).not.toBe(a.id);
      const byPairwise = await found(new URLSearchParams({ sub, client_id: pairwise.client_id as string }).toString());
      expect(byPairwise.body.accounts).toEqual([expect.objectContaining({ id: a.id })]);
      expect((await found(new URLSearchParams({ email: uniqueEmail('nobody') }).toString())).body).toEqual({ accounts: [] });
      // Audited with the operator client's id, without the value searched for.
      const viewed = await auditRows({ type: 'account_viewed', accountId: a.id, clientId: reader.id });
      expect(viewed.length).toBeGreaterThanOrEqual(5);
      expect(JSON.stringify(viewed)).not.toContain(email);
    });

    it('refuses bad find input as 400: no criterion, two criteria, a stray parameter, a repeated one', async () => {
      const token = await read();
      for (const query of ['', 'email=a@example.test&phone=%2B819012345678', 'email=a@example.test&client_id=x', 'email=a@example.test&email=b@example.test', `sub=${'x'.repeat(300)}`]) {
        const res = await call('GET', `/accounts?${query}`, token);
        expect({ query, status: res.status, error: res.body.error }).toEqual({ query, status: 400, error: 'invalid_request' });
      }
    });

    it('shows an account (never a session id), 404 for an unknown one, 400 for a malformed id', async () => {
      const email = uniqueEmail('show');
      const a = await account({ email });
      const sessionId = await sessionOf(a.id);
      const token = await read();
      const shown = await call('GET', `/accounts/${a.id}`, token);
      expect(shown.status).toBe(200);
      expect(shown.body).toMatchObject({ id: a.id, primaryEmail: email, disabledAt: null, passkeys: [], links: [], grants: [] });
      expect(shown.body.sessions).toEqual([{ signedInAt: expect.any(String), amr: ['otp'], clientIds: [], expiresAt: expect.any(String) }]);
      expect(JSON.stringify(shown.body)).not.toContain(sessionId);
      expect(Array.isArray(shown.body.recentAudit)).toBe(true);
      const unknown = randomUUID();
      expect((await call('GET', `/accounts/${unknown}`, token))).toMatchObject({ status: 404, body: { error: 'not_found' } });
      const refused = (await auditRows({ type: 'admin_api_refused', clientId: reader.id })).map((r) => r.data);
      expect(refused).toContainEqual(expect.objectContaining({ operation: 'showAccount', status: 404, reason: 'not_found', requestedAccountId: unknown }));
      expect((await call('GET', '/accounts/not-a-uuid', token))).toMatchObject({ status: 400, body: { error: 'invalid_request' } });
    });

    it('disables and enables an account; doing either twice is a 409; each change is audited with the operator client id', async () => {
      const a = await account({ email: uniqueEmail('disable') });
      const token = await write();
      const disabled = await call('POST', `/accounts/${a.id}/disable`, token, { reason: 'support ticket 123' });
      expect(disabled).toMatchObject({ status: 200, body: { disabled: true, sessions: 0, grants: 0 } });
      expect((await server.services.accounts.findAccountById(a.id))?.disabledAt).toBeInstanceOf(Date);
      expect(await call('POST', `/accounts/${a.id}/disable`, token)).toMatchObject({ status: 409, body: { error: 'already_disabled' } });
      expect(await call('POST', `/accounts/${a.id}/enable`, token)).toMatchObject({ status: 200, body: { enabled: true } });
      expect((await server.services.accounts.findAccountById(a.id))?.disabledAt).toBeNull();
      expect(await call('POST', `/accounts/${a.id}/enable`, token)).toMatchObject({ status: 409, body: { error: 'not_disabled' } });
      expect(await call('POST', `/accounts/${randomUUID()}/enable`, token)).toMatchObject({ status: 404 });
      expect(await call('POST', `/accounts/${a.id}/disable`, token, '{not json')).toMatchObject({ status: 400, body: { error: 'invalid_request' } });
      expect(await call('POST', `/accounts/${a.id}/disable`, token, { reason: 42 })).toMatchObject({ status: 400 });

      expect(await auditRows({ type: 'account_disabled', accountId: a.id })).toEqual([
        { client_id: writer.id, data: expect.objectContaining({ reason: 'support ticket 123', actor: `admin:${writer.id}` }) },
      ]);
      expect(await auditRows({ type: 'account_enabled', accountId: a.id })).toEqual([{ client_id: writer.id, data: expect.objectContaining({ actor: `admin:${writer.id}` }) }]);
      const refusals = (await auditRows({ type: 'admin_api_refused', accountId: a.id, clientId: writer.id })).map((r) => r.data.reason);
      expect(refusals).toEqual(expect.arrayContaining(['already_disabled', 'not_disabled']));
    });

    it('unlinks a provider; 404 when none is linked, 409 when it is the last way in, 400 for an unknown provider', async () => {
      const token = await write();
      const withEmail = await account({ email: uniqueEmail('unlink'), google: `g-${randomUUID()}` });
      expect(await call('DELETE', `/accounts/${withEmail.id}/providers/google`, token)).toMatchObject({ status: 200, body: { unlinked: 'google', appleTokenRevoked: false } });
      expect(await server.services.identities.listForAccount(withEmail.id)).toEqual([]);
      expect(await call('DELETE', `/accounts/${withEmail.id}/providers/google`, token)).toMatchObject({ status: 404 });
      expect(await call('DELETE', `/accounts/${withEmail.id}/providers/line`, token)).toMatchObject({ status: 400 });
      expect(await auditRows({ type: 'upstream_unlinked', accountId: withEmail.id })).toEqual([expect.objectContaining({ client_id: writer.id })]);

      const onlyGoogle = await account({ google: `g-${randomUUID()}` });
      expect(await call('DELETE', `/accounts/${onlyGoogle.id}/providers/google`, token)).toMatchObject({ status: 409, body: { error: 'last_method' } });
      expect(await server.services.identities.listForAccount(onlyGoogle.id)).toHaveLength(1);
    });

    it('ends an account\'s sessions, and deletes an account (then 404)', async () => {
      const token = await write();
      const a = await account({ email: uniqueEmail('delete'), phone: uniquePhone() });
      await sessionOf(a.id);
      expect(await call('DELETE', `/accounts/${a.id}/sessions`, token)).toMatchObject({ status: 200, body: { sessions: 1, grants: 0 } });
      expect((await call('GET', `/accounts/${a.id}`, await read())).body.sessions).toEqual([]);
      expect(await auditRows({ type: 'sessions_ended', accountId: a.id })).toEqual([expect.objectContaining({ client_id: writer.id })]);
      const deleted = await call('DELETE', `/accounts/${a.id}`, token);
      expect(deleted).toMatchObject({ status: 200, body: { deleted: true, confirmationSent: true } });
      expect(await server.services.accounts.findAccountById(a.id)).toBeUndefined();
      expect(await call('GET', `/accounts/${a.id}`, await read())).toMatchObject({ status: 404 });
      expect(await call('DELETE', `/accounts/${a.id}`, token)).toMatchObject({ status: 404 });
      expect(await auditRows({ type: 'account_deleted', accountId: a.id })).toEqual([expect.objectContaining({ client_id: writer.id })]);
    });

    it('exports the audit events of a period (of one account or all), and refuses a bad period as 400', async () => {
      const a = await account({ email: uniqueEmail('audit') });
      const writeToken = await write();
      await call('POST', `/accounts/${a.id}/disable`, writeToken);
      const token = await read();
      const from = new Date(Date.now() - 3_600_000).toISOString();
      const to = new Date(Date.now() + 60_000).toISOString();
      const one = await call('GET', `/audit-events?${new URLSearchParams({ from, to, account_id: a.id })}`, token);
      expect(one.status).toBe(200);
      expect(one.body.events).toEqual([expect.objectContaining({ type: 'account_disabled', accountId: a.id, clientId: writer.id })]);
      const all = await call('GET', `/audit-events?${new URLSearchParams({ from, to })}`, token);
      expect((all.body.events as Body[]).some((e) => e.accountId === a.id)).toBe(true);
      expect(await auditRows({ type: 'audit_exported', clientId: reader.id })).not.toHaveLength(0);
      const periods: Array<Record<string, string>> = [
        { to }, { from, to: from }, { from: 'yesterday', to }, { from: '2026-12-01T00:00:00', to }, { from: '2024-01-01', to: '2026-01-01' }, { from, to, account_id: 'x' },
      ];
      for (const query of periods) {
        const res = await call('GET', `/audit-events?${new URLSearchParams(query)}`, token);
        expect({ query, status: res.status }).toEqual({ query, status: 400 });
      }
    });
  });

  it('serves an OpenAPI 3.1 document listing exactly the routes there are', async () => {
    const res = await fetch(`${api}/openapi.json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { openapi: string; servers: Array<{ url: string }>; paths: Record<string, Record<string, { security?: Array<Record<string, string[]>> }>> };
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.servers[0]?.url).toBe(api);
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)).sort();
    const routed = adminApiRoutes(server.services).stack
      .filter((layer) => layer.methods.length > 0)
      .flatMap((layer) => layer.methods.filter((m) => m !== 'HEAD').map((m) => `${m} ${String(layer.path).replace('/admin/api/v1', '').replace(/:(\w+)/g, '{$1}')}`))
      .sort();
    expect(routed.length).toBeGreaterThan(5);
    expect(documented).toEqual(routed);
    // Each operation's documented scope is the one its route asks for: a token without it gets 403 naming it.
    const noAdmin = await tokenFor(exporter, 'tsunagi:export');
    const readOnly = await read();
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const scope = op.security?.[0]?.clientCredentials?.[0];
        if (!scope) continue;
        const url = path.replace('{id}', randomUUID()).replace('{provider}', 'google');
        const res = await call(method.toUpperCase(), url, scope === 'admin:write' ? readOnly : noAdmin);
        expect({ op: `${method} ${path}`, status: res.status, scope: res.body.scope }).toEqual({ op: `${method} ${path}`, status: 403, scope });
      }
    }
  });
});
