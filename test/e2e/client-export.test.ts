import { keyedHash, normaliseLinkCode } from '../../src/flows/client-export.js';
import type { RunningServer } from '../../src/server.js';
import { SmtpSink } from '../fakes/smtp-sink.js';
import { Browser, csrfOf } from '../support/browserless.js';
import { createAccount, openApproval } from '../support/ciba-approval.js';
import { describeBackends, startTestServer, uniqueEmail } from '../support/harness.js';

interface Backend { id: string; secret: string }

// LINE mini-app method 3 against a real Tsunagi: a person makes a link code on the account page, the
// backend pulls the export with a client-credentials token, and every refusal.
describe(`incremental export and link codes (${describeBackends()})`, () => {
  let server: RunningServer;
  let sink: SmtpSink;
  let issuer: string;
  let backend: Backend;

  beforeAll(async () => {
    sink = new SmtpSink();
    server = await startTestServer({ SMTP_URL: await sink.start() });
    issuer = server.services.config.issuer;
    backend = await addBackend('tsunagi:export');
  });

  afterAll(async () => {
    await server?.close();
    await sink?.close();
  });

  async function addBackend(scope?: string): Promise<Backend> {
    const added = await server.services.clients.add({
      client_name: 'Example Shop mini app', grant_types: ['client_credentials'], response_types: [], redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic', ...(scope ? { scope } : {}),
    });
    return { id: added.client_id as string, secret: added.client_secret as string };
  }
  async function tokenFor(client: Backend, scope = 'tsunagi:export'): Promise<string> {
    const res = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}` },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope }),
    });
    const json = await res.json() as Record<string, unknown>;
    if (res.status !== 200) throw new Error(`token: ${JSON.stringify(json)}`);
    return json.access_token as string;
  }
  const pull = async (token: string | undefined, query = '') => {
    const res = await fetch(`${issuer}/export/changes${query}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    return { status: res.status, text: await res.text(), headers: res.headers };
  };
  const lines = (text: string) => text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

  it('exports the link code a signed-in person made for the app, keyed, with the account sub; then only changes', async () => {
    const email = uniqueEmail('export');
    const account = await createAccount(server, { email });
    const token = await tokenFor(backend);
    const before = await pull(token);
    expect(before.status).toBe(200);
    const cursor = before.headers.get('x-next-cursor') as string;

    const browser = new Browser();
    const page = await openApproval(server, sink, browser, `${issuer}/account/link-code/${backend.id}`, email, '/account/link-code/');
    expect(page.body).toContain('Example Shop mini app');
    const issued = await browser.follow(`${issuer}/account/link-code/${backend.id}`, { form: { _csrf: csrfOf(page.body), action: 'issue' } });
    const code = /data-link-code>(\d{4}-\d{4})</.exec(issued.body)?.[1] as string;
    expect(code).toMatch(/^\d{4}-\d{4}$/);

    const after = await pull(token, `?since=${encodeURIComponent(cursor)}`);
    expect(after.status).toBe(200);
    const [header, record, end] = lines(after.text);
    expect(header?.type).toBe('header');
    expect(record).toMatchObject({ type: 'account', sub: account.id, link_code_hash: keyedHash(header?.hash_key as string, 'code', normaliseLinkCode(code) as string) });
    expect(record?.email_hashes).toEqual([keyedHash(header?.hash_key as string, 'email', email.toLowerCase())]);
    expect(after.text).not.toContain(email.toLowerCase());
    expect(end).toEqual({ type: 'end', next_cursor: after.headers.get('x-next-cursor'), more: false });

    // Stopping shares gives a tombstone; CSV carries it too.
    const stopped = await browser.follow(`${issuer}/account/link-code/${backend.id}`, { form: { _csrf: csrfOf(issued.body), action: 'stop' } });
    expect(stopped.body).toContain('data-link-code-stopped');
    const csv = await pull(token, `?format=csv&since=${encodeURIComponent(after.headers.get('x-next-cursor') as string)}`);
    expect(csv.headers.get('content-type')).toContain('text/csv');
    expect(csv.text.trim().split('\r\n')[1]).toMatch(new RegExp(`^tombstone,${account.id},`));
  });

  it('refuses without a token, for a client not registered for the export, and with a tampered or another client\'s cursor', async () => {
    expect((await pull(undefined)).status).toBe(401);
    expect((await pull('not-a-token')).status).toBe(401);
    const plain = await addBackend();
    // A client registered without the scope cannot get a token with it (a client without `scope`
    // metadata may ask only for the ordinary scopes), and the endpoint checks the registration too.
    await expect(tokenFor(plain)).rejects.toThrow(/invalid_scope/);
    const unregistered = await pull(await tokenFor(await addBackend('openid'), 'openid'));
    expect(unregistered.status).toBe(403);
    expect(JSON.parse(unregistered.text)).toMatchObject({ error: 'insufficient_scope' });
    const ok = await pull(await tokenFor(backend));
    const cursor = ok.headers.get('x-next-cursor') as string;
    const [v, seq, mac] = cursor.split('.');
    const tampered = await pull(await tokenFor(backend), `?since=${v}.${Number(seq) + 1}.${mac}`);
    expect(tampered.status).toBe(400);
    expect(JSON.parse(tampered.text)).toMatchObject({ error: 'invalid_cursor' });
    // Another client's cursor is refused too (cursors are bound to their client).
    const other = await addBackend('tsunagi:export');
    const replayed = await pull(await tokenFor(other), `?since=${encodeURIComponent(cursor)}`);
    expect(replayed.status).toBe(400);
  });

  it('shows link codes only to a signed-in person, and only for apps registered for the export', async () => {
    const anonymous = await new Browser().request(`${issuer}/account/link-code/${backend.id}`);
    expect(anonymous.res.status).toBe(302);
    expect(anonymous.res.headers.get('location')).toContain('/account/login');
    const plain = await addBackend();
    const unknown = await new Browser().request(`${issuer}/account/link-code/${plain.id}`);
    expect(unknown.res.status).toBe(404);
  });
});
