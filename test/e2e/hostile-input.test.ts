import { randomUUID } from 'node:crypto';
import pg from 'pg';
import * as oidc from 'openid-client';
import { pino } from 'pino';
import type { Logger } from '../../src/logger.js';
import { DEVICE_CODE_GRANT } from '../../src/oidc/device-flow.js';
import type { RunningServer } from '../../src/server.js';
import { SmtpSink } from '../fakes/smtp-sink.js';
import { Browser, csrfOf } from '../support/browserless.js';
import { describeBackends, startTestServer, uniqueEmail } from '../support/harness.js';
import { authorizationRequest, discover, signInWithEmail } from './support.js';

// Every form and endpoint, sent what an attacker or a broken client sends: NUL bytes, invalid UTF-8,
// bidi controls, oversized values, arrays and objects where a string belongs, JSON where a form
// belongs (and the reverse). Nothing may answer 5xx, log an error, or write a row.

const REDIRECT = 'http://127.0.0.1:9/cb';

/** Several hundred requests per test: on a busy machine with the embedded database, more than jest's minute. */
const CORPUS_TIMEOUT_MS = 180_000;

/** The tables a request could write to; each must have the same number of rows after the corpus. */
const TABLES = [
  'accounts', 'account_emails', 'account_phones', 'audit_events', 'clients', 'oidc_payloads', 'otp_challenges',
  'interaction_proofs', 'webauthn_credentials', 'webauthn_challenges', 'upstream_identities', 'upstream_logins',
];

/** Raw form bodies (already encoded): each is sent as it is to every form field. */
const HOSTILE_VALUES: Array<[string, (field: string) => string]> = [
  ['a NUL byte', (f) => `${f}=%00`],
  ['a NUL byte inside an email', (f) => `${f}=a%00b%40example.test`],
  ['invalid UTF-8 (lone continuation byte)', (f) => `${f}=%80`],
  ['invalid UTF-8 (overlong and surrogate)', (f) => `${f}=%C0%AF%ED%A0%80`],
  ['a broken percent escape', (f) => `${f}=%zz%`],
  ['an RTL override', (f) => `${f}=%E2%80%AEmoc.elpmaxe%40a`],
  ['an array', (f) => `${f}=a&${f}=b`],
  ['a bracket array', (f) => `${f}[]=a&${f}[]=b`],
  ['an object', (f) => `${f}[x]=a`],
  ['an empty value', (f) => `${f}=`],
  ['an oversized value (over the 16 kB form limit)', (f) => `${f}=${'a'.repeat(20_000)}`],
];

interface Probe { label: string; status: number; body: string }

/** An isolated schema on the shared Postgres (row counts must not see other test files' writes). */
async function isolatedDatabaseUrl(): Promise<{ url: string | undefined; drop: () => Promise<void> }> {
  const base = process.env.DATABASE_URL;
  if (!base) return { url: undefined, drop: async () => undefined };
  const schema = `hostile_${randomUUID().replace(/-/g, '')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const url = new URL(base);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return {
    url: url.href,
    drop: async () => {
      await admin.query(`DROP SCHEMA ${schema} CASCADE`);
      await admin.end();
    },
  };
}

/** A logger that keeps every line at warn or above, so the test can say no error was logged. */
function recordingLogger(): { log: Logger; lines: Array<{ level: number; msg: string; err?: unknown }> } {
  const lines: Array<{ level: number; msg: string; err?: unknown }> = [];
  const stream = { write(line: string) { const parsed = JSON.parse(line) as { level: number; msg: string; err?: unknown }; lines.push(parsed); } };
  const log = pino({ level: 'warn' }, stream);
  return { log, lines };
}

describe(`hostile input (${describeBackends()})`, () => {
  let server: RunningServer;
  let sink: SmtpSink;
  let dropDatabase: () => Promise<void>;
  let issuer: string;
  let clientId: string;
  let clientSecret: string;
  let logged: ReturnType<typeof recordingLogger>;
  let accessToken: string;
  const signedIn = new Browser();

  beforeAll(async () => {
    sink = new SmtpSink();
    const db = await isolatedDatabaseUrl();
    dropDatabase = db.drop;
    logged = recordingLogger();
    server = await startTestServer({
      SMTP_URL: await sink.start(), INITIAL_ACCESS_TOKEN: 'i'.repeat(40), ...(db.url ? { DATABASE_URL: db.url } : {}),
    }, { log: logged.log });
    issuer = server.services.config.issuer;
    const added = await server.services.clients.add({
      client_name: 'Shop', redirect_uris: [REDIRECT], post_logout_redirect_uris: ['http://127.0.0.1:9/'],
      grant_types: ['authorization_code', 'refresh_token', DEVICE_CODE_GRANT], first_party: true,
    });
    clientId = added.client_id as string;
    clientSecret = added.client_secret as string;
    const config = await discover(server, clientId, clientSecret);
    const req = await authorizationRequest(config, REDIRECT, { scope: 'openid email offline_access' });
    const { callback } = await signInWithEmail(signedIn, issuer, req.url, REDIRECT, uniqueEmail('hostile'), sink);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    accessToken = tokens.access_token;
    // Open the account page once, so the account forms below meet a signed-in account session.
    const account = await signedIn.follow(`${issuer}/account`);
    expect(account.body).toContain('/account/emails');
  }, 120_000);

  afterAll(async () => {
    await server?.close();
    await sink?.close();
    await dropDatabase?.();
  });

  const countRows = async (): Promise<Record<string, number>> => {
    const counts: Record<string, number> = {};
    for (const table of TABLES) {
      const { rows } = await server.services.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
      counts[table] = rows[0]?.n ?? -1;
    }
    return counts;
  };

  const send = async (label: string, path: string, init: { method?: string; body?: string | Buffer; type?: string; headers?: Record<string, string>; browser?: Browser }): Promise<Probe> => {
    const browser = init.browser;
    const res = await fetch(`${issuer}${path}`, {
      method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
      redirect: 'manual',
      headers: {
        ...(browser ? { cookie: browser.jar.header() } : {}),
        ...(init.body !== undefined ? { 'content-type': init.type ?? 'application/x-www-form-urlencoded' } : {}),
        ...init.headers,
      },
      body: init.body,
    });
    return { label: `${init.method ?? (init.body === undefined ? 'GET' : 'POST')} ${path.slice(0, 80)} with ${label}`, status: res.status, body: (await res.text()).slice(0, 300) };
  };

  /** A fresh sign-in page (its interaction, cookies and CSRF token) in a browser of its own. */
  const freshInteraction = async (): Promise<{ browser: Browser; uid: string; csrf: string }> => {
    const config = await discover(server, clientId, clientSecret);
    const req = await authorizationRequest(config, REDIRECT, { prompt: 'login' });
    const browser = new Browser();
    const login = await browser.follow(req.url.href);
    const uid = /\/interaction\/([\w-]+)\//.exec(login.body)?.[1];
    if (!uid) throw new Error(`no interaction: ${login.body.slice(0, 200)}`);
    return { browser, uid, csrf: csrfOf(login.body) };
  };

  const expectNoServerError = (probes: Probe[]) => {
    const failures = probes.filter((p) => p.status >= 500);
    expect(failures).toEqual([]);
    expect(logged.lines.filter((l) => l.level >= 50)).toEqual([]);
    // Refusals are logged at warn, as one line that says why, never with an error's stack.
    const warnings = logged.lines.filter((l) => l.level === 40);
    expect(warnings.filter((l) => l.msg === 'request refused').length).toBeGreaterThan(0);
    expect(warnings.filter((l) => JSON.stringify(l).includes('"stack"'))).toEqual([]);
    logged.lines.length = 0;
  };

  it('answers the NUL cases that used to fail in Postgres with a 400 and an OAuth error or a readable page', async () => {
    const basic = `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`;
    const json = async (path: string, body: string) => {
      const res = await fetch(`${issuer}${path}`, { method: 'POST', headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' }, body });
      const text = await res.text();
      return { status: res.status, body: (text ? JSON.parse(text) : {}) as { error?: string } };
    };
    expect(await json('/token', 'grant_type=refresh_token&refresh_token=%00')).toEqual({ status: 400, body: expect.objectContaining({ error: 'invalid_grant' }) });
    expect(await json('/token/introspection', 'token=%00')).toEqual({ status: 200, body: { active: false } });
    expect(await json('/token/revocation', 'token=%00')).toEqual({ status: 200, body: {} });
    const auth = await fetch(`${issuer}/auth?client_id=%00&response_type=code&scope=openid`, { redirect: 'manual' });
    expect(auth.status).toBe(400);
    expect(await auth.text()).toContain('This request cannot be completed.');
    const authJson = await fetch(`${issuer}/auth?client_id=%00&response_type=code&scope=openid`, { headers: { accept: 'application/json' }, redirect: 'manual' });
    expect(authJson.status).toBe(400);
    expect(await authJson.json()).toMatchObject({ error: 'invalid_request' });
    const device = await fetch(`${issuer}/device`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'xsrf=abc&user_code=BCDF-GHJK' });
    expect(device.status).toBe(400);
    expect(await device.text()).toContain('This form has expired.');
    const { browser, uid, csrf } = await freshInteraction();
    const email = await browser.request(`${issuer}/interaction/${uid}/email`, { form: { _csrf: csrf, email: 'kate\u0000@example.test' } });
    expect(email.res.status).toBe(400);
    expect(email.body).toContain('lang="en"');
  });

  it('answers every interaction form with 4xx or a page, never 5xx, and writes nothing', async () => {
    const { browser, uid, csrf } = await freshInteraction();
    const before = await countRows();
    const probes: Probe[] = [];
    const forms: Array<[string, string[]]> = [
      ['email', ['email']], ['code', ['code']], ['phone', ['phone']], ['sms-code', ['code']], ['signup', []], ['signup/cancel', []],
      ['consent', []], ['link/email', ['email']], ['link/code', ['code']], ['link/sms', ['phone']], ['link/decline', []],
      ['require-email', ['email']], ['upstream-signup', []], ['upstream/google', []],
    ];
    for (const [form, fields] of forms) {
      for (const [label, encode] of HOSTILE_VALUES) {
        for (const field of [...fields, '_csrf']) {
          const rest = field === '_csrf' ? '' : `&_csrf=${encodeURIComponent(csrf)}`;
          probes.push(await send(label, `/interaction/${uid}/${form}`, { body: `${encode(field)}${rest}`, browser }));
        }
      }
      probes.push(await send('JSON where a form belongs', `/interaction/${uid}/${form}`, { body: JSON.stringify({ _csrf: csrf, email: ['x@example.test'] }), type: 'application/json', browser }));
      probes.push(await send('raw invalid UTF-8 bytes', `/interaction/${uid}/${form}`, { body: Buffer.concat([Buffer.from(`_csrf=${csrf}&${fields[0] ?? 'x'}=`), Buffer.from([0xff, 0xfe, 0x00, 0xc3])]), browser }));
    }
    for (const [label, path] of [['a NUL uid', '/interaction/%00'], ['an invalid UTF-8 uid', '/interaction/%FF/email'], ['an oversized uid', `/interaction/${'u'.repeat(5000)}/code`]] as const) {
      probes.push(await send(label, path, { browser }));
      probes.push(await send(label, path, { body: `_csrf=${csrf}&email=a%40example.test`, browser }));
    }
    probes.push(await send('a NUL idp_hint and choose', `/interaction/${uid}?choose=%00&x=%FF`, { browser }));
    // The options endpoints take no input (a challenge is their job): only unparseable bodies for them.
    const unparseable = [['malformed JSON', '{"response":'], ['a NUL anywhere', '{"x":["\\u0000"]}']] as const;
    const wrongShapes = [
      ['an array body', '[1,2]'], ['a response of the wrong shape', '{"response":{"id":["x"],"rawId":{"a":1},"response":null}}'], ['a form body', 'response=%00'],
    ] as const;
    for (const path of ['passkey/options', 'passkey/verify', 'passkey/register/options', 'passkey/register/verify', 'link/passkey/verify']) {
      for (const [label, body] of [...unparseable, ...(path.endsWith('options') ? [] : wrongShapes)]) {
        probes.push(await send(label, `/interaction/${uid}/${path}`, { body, type: body.startsWith('response=') ? undefined : 'application/json', headers: { 'x-csrf-token': csrf }, browser }));
      }
    }
    expectNoServerError(probes);
    expect(await countRows()).toEqual(before);
  }, CORPUS_TIMEOUT_MS);

  it('answers every account form with 4xx or a page, never 5xx, and writes nothing', async () => {
    const overview = await signedIn.follow(`${issuer}/account`);
    const csrf = csrfOf(overview.body);
    const before = await countRows();
    const probes: Probe[] = [];
    const forms: Array<[string, string[]]> = [
      ['emails', ['email']], ['emails/verify', ['code']], ['emails/primary', ['email']], ['emails/remove', ['email']],
      ['phones', ['phone']], ['phones/verify', ['code']], ['phones/remove', ['phone']],
      ['passkeys/%00/rename', ['name']], ['passkeys/%FF/remove', []], [`passkeys/${randomUUID()}/rename`, ['name']],
      ['grants/%00/revoke', []], ['providers/%00/unlink', []], ['providers/google/link', []], ['providers/%00/link', []],
    ];
    for (const [form, fields] of forms) {
      for (const [label, encode] of HOSTILE_VALUES) {
        for (const field of [...fields, '_csrf']) {
          const rest = field === '_csrf' ? '' : `&_csrf=${encodeURIComponent(csrf)}`;
          probes.push(await send(label, `/account/${form}`, { body: `${encode(field)}${rest}`, browser: signedIn }));
        }
      }
      probes.push(await send('JSON where a form belongs', `/account/${form}`, { body: JSON.stringify({ _csrf: csrf, email: { a: 1 } }), type: 'application/json', browser: signedIn }));
    }
    for (const path of ['/account?notice=%00', '/account/login?return=%00%FF', '/account/callback?code=%00&state=%FF', '/account/emails/verify?x=%00', '/account/providers/continue?state=%00']) {
      probes.push(await send('hostile query', path, { browser: signedIn }));
    }
    for (const path of ['/account/passkeys/options', '/account/passkeys/verify']) {
      probes.push(await send('malformed JSON', path, { body: '{"response":', type: 'application/json', headers: { 'x-csrf-token': csrf }, browser: signedIn }));
      probes.push(await send('a NUL name', path, { body: '{"response":{"id":"\\u0000"},"name":"\\u0000"}', type: 'application/json', headers: { 'x-csrf-token': csrf }, browser: signedIn }));
    }
    expectNoServerError(probes);
    expect(await countRows()).toEqual(before);
  }, CORPUS_TIMEOUT_MS);

  it('answers oidc-provider endpoints with an OAuth error, never 5xx, and writes nothing', async () => {
    const basic = `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`;
    const before = await countRows();
    const probes: Probe[] = [];
    const withClient = { authorization: basic };
    const tokenBodies = [
      'grant_type=refresh_token&refresh_token=%00', 'grant_type=refresh_token&refresh_token=%FF%00', `grant_type=refresh_token&refresh_token=${'r'.repeat(70_000)}`,
      'grant_type=refresh_token&refresh_token=a&refresh_token=b', 'grant_type=authorization_code&code=%00&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&code_verifier=%00',
      `grant_type=${encodeURIComponent(DEVICE_CODE_GRANT)}&device_code=%00`, 'grant_type=%00', 'grant_type=client_credentials&scope=%00&resource=%00',
      'grant_type[]=refresh_token', 'grant_type=refresh_token&refresh_token[x]=1',
    ];
    for (const body of tokenBodies) {
      probes.push(await send(body.slice(0, 60), '/token', { body, headers: withClient }));
      probes.push(await send(`${body.slice(0, 60)} from client_id=%00`, '/token', { body: `${body}&client_id=%00&client_secret=%00` }));
    }
    probes.push(await send('a NUL in basic credentials', '/token', { body: 'grant_type=client_credentials', headers: { authorization: `Basic ${Buffer.from('%00:%00').toString('base64')}` } }));
    probes.push(await send('raw NUL in basic credentials', '/token', { body: 'grant_type=client_credentials', headers: { authorization: `Basic ${Buffer.from('\u0000:\u0000').toString('base64')}` } }));
    probes.push(await send('JSON where a form belongs', '/token', { body: '{"grant_type":"refresh_token","refresh_token":"\\u0000"}', type: 'application/json', headers: withClient }));
    for (const path of ['/token/introspection', '/token/revocation']) {
      for (const body of ['token=%00', 'token=%FF', 'token=%00&token_type_hint=refresh_token', 'token=%00&token_type_hint=%00', `token=${'t'.repeat(70_000)}`, 'token[]=a', 'token=a&token=b']) {
        probes.push(await send(body.slice(0, 40), path, { body, headers: withClient }));
      }
      probes.push(await send('client_id=%00', path, { body: 'token=x&client_id=%00' }));
    }
    for (const body of ['access_token=%00', 'access_token=%FF', 'access_token[]=x']) probes.push(await send(body, '/me', { body }));
    probes.push(await send('a bearer token of NUL escapes', '/me', { headers: { authorization: 'Bearer %00' } }));
    probes.push(await send('a valid bearer and NUL claims', `/me?claims=%00`, { headers: { authorization: `Bearer ${accessToken}` } }));
    const authQueries = [
      'client_id=%00', 'client_id=%FF&response_type=code', `client_id=${encodeURIComponent(clientId)}&response_type=code&scope=openid&redirect_uri=%00`,
      `client_id=${encodeURIComponent(clientId)}&response_type=code&scope=openid&redirect_uri=${encodeURIComponent(REDIRECT)}&code_challenge=%00&code_challenge_method=S256&login_hint=%00&ui_locales=%00&idp_hint=%00&state=%00&nonce=%00`,
      'client_id[]=a&client_id[]=b', `client_id=${'c'.repeat(10_000)}`, 'request=%00&client_id=%00', 'request_uri=%00&client_id=x',
    ];
    for (const q of authQueries) {
      probes.push(await send(q.slice(0, 50), `/auth?${q}`, {}));
      probes.push(await send(`${q.slice(0, 50)} (POST)`, '/auth', { body: q }));
    }
    probes.push(await send('client_id=%00', '/device/auth', { body: 'client_id=%00&scope=openid' }));
    probes.push(await send('user_code=%00 without its xsrf cookie', '/device', { body: 'xsrf=%00&user_code=%00' }));
    probes.push(await send('no xsrf cookie', '/device', { body: 'xsrf=abc&user_code=BCDF-GHJK' }));
    probes.push(await send('confirm without its xsrf cookie', '/device', { body: 'xsrf=abc&user_code=BCDF-GHJK&confirm=yes' }));
    probes.push(await send('user_code=%00 with a session', '/device', { body: 'xsrf=%00&user_code=%00', browser: signedIn }));
    probes.push(await send('user_code=%00', '/device?user_code=%00', {}));
    for (const q of ['id_token_hint=%00', 'client_id=%00', `client_id=${encodeURIComponent(clientId)}&post_logout_redirect_uri=%00`, 'id_token_hint=a.b.c&state=%FF', 'ui_locales=%00']) {
      probes.push(await send(q, `/session/end?${q}`, { browser: signedIn }));
    }
    probes.push(await send('no xsrf', '/session/end/confirm', { body: 'xsrf=%00&logout=yes', browser: signedIn }));
    probes.push(await send('bad registration JSON', '/reg', { body: '{"redirect_uris":', type: 'application/json', headers: { authorization: `Bearer ${'i'.repeat(40)}` } }));
    probes.push(await send('NUL registration metadata', '/reg', { body: '{"redirect_uris":["https://a.example/\\u0000"],"client_name":"\\u0000","client_id":"\\u0000"}', type: 'application/json', headers: { authorization: `Bearer ${'i'.repeat(40)}` } }));
    probes.push(await send('registration read of a NUL id', '/reg/%00', { headers: { authorization: 'Bearer x' } }));
    probes.push(await send('a NUL state', '/upstream/google/callback?state=%00&code=%00', {}));
    probes.push(await send('a NUL state (form_post)', '/upstream/apple/callback', { body: 'state=%00&code=%00' }));
    probes.push(await send('malformed JSON', '/upstream/apple/notifications', { body: '{"payload":', type: 'application/json' }));
    probes.push(await send('a NUL payload', '/upstream/apple/notifications', { body: '{"payload":"\\u0000"}', type: 'application/json' }));
    probes.push(await send('a NUL request object', '/request', { body: 'client_id=%00&request=%00' }));
    for (const path of ['/assets/%00', '/assets/%FF.js', '/assets/..%2f..%2fpackage.json', '/metrics?x=%00', '/healthz%00', '/jwks?x=%00', '/.well-known/openid-configuration%00']) {
      probes.push(await send('a hostile path', path, {}));
    }
    expectNoServerError(probes);
    expect(await countRows()).toEqual(before);
  }, CORPUS_TIMEOUT_MS);
});
