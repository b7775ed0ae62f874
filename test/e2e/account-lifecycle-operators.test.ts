import { randomUUID } from 'node:crypto';
import * as oidc from 'openid-client';
import { run } from '../../src/cli/main.js';
import { parseAccountsCommand, runAccountsCommand } from '../../src/cli/accounts-commands.js';
import type { Actor } from '../../src/flows/account-lifecycle.js';
import { AccountDisabled } from '../../src/flows/account-disabled.js';
import { completeSignIn } from '../../src/flows/login.js';
import type { Proof } from '../../src/accounts/proof.js';
import type { RunningServer } from '../../src/server.js';
import { FakeGoogle } from '../fakes/google.js';
import { SmtpSink } from '../fakes/smtp-sink.js';
import { SoftwareAuthenticator } from '../fakes/software-authenticator.js';
import { CIBA_GRANT } from '../../src/oidc/ciba.js';
import { Browser, csrfOf, formAction } from '../support/browserless.js';
import { describeBackends, startTestServer, testConfig, uniqueEmail } from '../support/harness.js';
import { RelyingPartyServer, authorizationRequest, discover, signInWithEmail } from './support.js';

const OPERATOR: Actor = { kind: 'operator', name: 'alice' };
const phoneNumber = () => `+8190${String(Date.now() % 100_000_000).padStart(8, '0')}`;

// Issue 15, the operators' side: the account lifecycle's functions as the CLI runs them (parsed from
// the same argv, refused with the same messages), audit export by period and the retention sweep.
describe(`Account lifecycle for operators (${describeBackends()})`, () => {
  let server: RunningServer;
  let sink: SmtpSink;
  let rp: RelyingPartyServer;
  let google: FakeGoogle;
  let shop: oidc.Configuration;
  let pairwise: { id: string; config: oidc.Configuration };
  let redirectUri: string;

  beforeAll(async () => {
    sink = new SmtpSink();
    rp = new RelyingPartyServer();
    const origin = await rp.start();
    redirectUri = `${origin}/cb`;
    google = await new FakeGoogle().start();
    server = await startTestServer({ SMTP_URL: await sink.start(), OUTBOUND_ALLOW_PRIVATE: '127.0.0.1', ...google.env() });
    const a = await server.services.clients.add({
      client_name: 'Shop', redirect_uris: [redirectUri], first_party: true,
      backchannel_logout_uri: `${origin}/backchannel`, backchannel_logout_session_required: true,
    });
    shop = await discover(server, a.client_id as string, a.client_secret as string);
    const b = await server.services.clients.add({ client_name: 'Private', redirect_uris: [redirectUri], first_party: true, subject_type: 'pairwise' });
    pairwise = { id: b.client_id as string, config: await discover(server, b.client_id as string, b.client_secret as string) };
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    await sink?.close();
    await rp?.close();
    await google?.close();
  });

  /** Signs up by email code at `config`; the account id and the sub that client got. */
  async function signedUp(config = shop, email = uniqueEmail('op')) {
    const req = await authorizationRequest(config, redirectUri, { scope: 'openid email' });
    const browser = new Browser();
    const { callback } = await signInWithEmail(browser, server.services.config.issuer, req.url, redirectUri, email, sink);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    const account = await server.services.accounts.findAccountByVerifiedEmail({ address: email, key: email });
    if (!account) throw new Error('no account');
    return { accountId: account.id, sub: tokens.claims()?.sub as string, email, tokens, browser };
  }

  /** Runs `accounts ...` / `audit ...` as the CLI does, against the test server's lifecycle: its output, or its refusal. */
  async function cli(...argv: string[]): Promise<unknown> {
    const [group, ...rest] = argv;
    const cmd = parseAccountsCommand(group as 'accounts' | 'audit', rest, (m) => new Error(`usage: ${m}`));
    const printed: unknown[] = [];
    await runAccountsCommand(cmd, server.services.lifecycle, OPERATOR, { out: (v) => printed.push(v), refused: (m) => new Error(`refused: ${m}`) });
    return printed[0];
  }

  const auditOf = async (accountId: string, type: string) =>
    (await server.services.accounts.listAuditEvents({ accountId, type, limit: 5 }))[0];

  it('finds an account by email, phone, sub, a client\'s pairwise sub and upstream identity, and audits the search without its value', async () => {
    const { accountId, email } = await signedUp();
    const phone = phoneNumber();
    await server.services.db.pool.query(`INSERT INTO account_phones (id, account_id, phone, verified_at) VALUES ($1, $2, $3, now())`, [randomUUID(), accountId, phone]);
    const subject = `google-${randomUUID()}`;
    await server.services.identities.link(undefined, accountId, { provider: 'google', issuer: 'https://accounts.google.test', subject, email, emailVerified: true, isPrivateEmail: false });
    const other = await signedUp(pairwise.config);
    expect(other.sub).not.toBe(other.accountId);

    const idsOf = (found: unknown) => (found as Array<{ id: string }>).map((a) => a.id);
    expect(idsOf(await cli('accounts', 'find', '--email', email.toUpperCase()))).toEqual([accountId]);
    expect(idsOf(await cli('accounts', 'find', '--phone', phone))).toEqual([accountId]);
    expect(idsOf(await cli('accounts', 'find', '--sub', accountId))).toEqual([accountId]);
    expect(idsOf(await cli('accounts', 'find', '--issuer', 'https://accounts.google.test', '--subject', subject))).toEqual([accountId]);
    expect(idsOf(await cli('accounts', 'find', '--sub', other.sub, '--client', pairwise.id))).toEqual([other.accountId]);
    // The pairwise sub means nothing without its client, and another client's sub is not this one's.
    expect(await cli('accounts', 'find', '--sub', other.sub)).toEqual([]);
    expect(await cli('accounts', 'find', '--email', uniqueEmail('nobody'))).toEqual([]);
    const searched = await auditOf(accountId, 'account_viewed');
    expect(searched?.data).toMatchObject({ actor: 'cli:alice', found: true });
    expect(JSON.stringify(searched?.data)).not.toContain(email);
  });

  it('shows methods, links, sessions, grants and recent audit events', async () => {
    const { accountId, email } = await signedUp();
    const shown = await cli('accounts', 'show', accountId) as Record<string, unknown>;
    expect(shown).toMatchObject({ id: accountId, primaryEmail: email, disabledAt: null, passkeys: [], links: [] });
    expect((shown.sessions as unknown[]).length).toBe(1);
    expect((shown.grants as Array<{ clientId: string }>).map((g) => g.clientId)).toContain(shop.clientMetadata().client_id);
    expect((shown.recentAudit as Array<{ type: string }>).map((e) => e.type)).toEqual(expect.arrayContaining(['signup', 'sign_in']));
    await expect(cli('accounts', 'show', randomUUID())).rejects.toThrow('refused: no such account');
  });

  it('disables (sessions, grants and tokens end at once, back-channel logout sent) and enables, refusing repeats', async () => {
    const { accountId, sub, tokens } = await signedUp();
    const before = rp.logoutTokens.length;
    const disabled = await cli('accounts', 'disable', accountId, '--reason', 'fraud report 123') as Record<string, unknown>;
    expect(disabled).toMatchObject({ disabled: accountId, sessions: 1, logouts: [{ ok: true }] });
    expect(rp.logoutTokens.length).toBe(before + 1);
    await expect(oidc.fetchUserInfo(shop, tokens.access_token, sub)).rejects.toThrow();
    expect((await auditOf(accountId, 'account_disabled'))?.data).toMatchObject({ actor: 'cli:alice', reason: 'fraud report 123' });
    await expect(cli('accounts', 'disable', accountId)).rejects.toThrow('refused: the account is already disabled');

    expect(await cli('accounts', 'enable', accountId)).toEqual({ enabled: accountId });
    await expect(cli('accounts', 'enable', accountId)).rejects.toThrow('refused: the account is not disabled');
    // Signs in again after being enabled.
    const again = await signInWithEmail(new Browser(), server.services.config.issuer, (await authorizationRequest(shop, redirectUri)).url, redirectUri,
      (await server.services.accounts.findAccountById(accountId))?.emails[0]?.address as string, sink);
    expect(again.callback.searchParams.get('code')).toBeTruthy();
  });

  it('refuses a disabled account whatever method proved it (every sign-in ends in completeSignIn)', async () => {
    const { accountId } = await signedUp();
    await server.services.lifecycle.disableAccount(accountId, OPERATOR);
    const account = await server.services.accounts.findAccountById(accountId);
    if (!account) throw new Error('no account');
    const facts = { ip: '127.0.0.1', userAgent: 'jest', clientId: undefined };
    const proofs: Proof[] = [
      { interactionUid: 'i', method: 'email_otp', amr: ['otp'], subject: { kind: 'email', address: 'x@example.test', key: 'x@example.test' }, at: new Date() },
      { interactionUid: 'i', method: 'sms_otp', amr: ['otp', 'sms'], subject: { kind: 'phone', phone: '+819000000000' }, at: new Date() },
      { interactionUid: 'i', method: 'passkey', amr: ['hwk'], subject: { kind: 'account', accountId }, at: new Date() },
      { interactionUid: 'i', method: 'upstream', amr: ['fed'], subject: { kind: 'account', accountId, via: [{ provider: 'apple', issuer: 'https://appleid.apple.test', subject: 's' }] }, at: new Date() },
    ];
    for (const proof of proofs) {
      await expect(completeSignIn({ accounts: server.services.accounts }, account, proof, facts)).rejects.toBeInstanceOf(AccountDisabled);
    }
    const refused = await server.services.accounts.listAuditEvents({ accountId, type: 'sign_in_refused_disabled', limit: 10 });
    expect(refused.map((e) => e.data.method).sort()).toEqual(['email_otp', 'passkey', 'sms_otp', 'upstream']);
    expect(await server.services.accounts.listAuditEvents({ accountId, type: 'sign_in', limit: 10 })).toHaveLength(1);
  });

  it('answers a passkey sign-in to a disabled account with the disabled message, over HTTP', async () => {
    const { accountId } = await signedUp();
    const account = await server.services.accounts.findAccountById(accountId);
    if (!account) throw new Error('no account');
    const { issuer, webauthn } = server.services.config;
    const authenticator = new SoftwareAuthenticator(webauthn.rpId, new URL(issuer).origin);
    const binding = `account:${randomUUID()}`;
    const registered = await server.services.passkeys.verifyRegistration(account, binding,
      authenticator.register(await server.services.passkeys.registrationOptions(account, binding)), 'Laptop');
    expect(registered.ok).toBe(true);
    await server.services.lifecycle.disableAccount(accountId, OPERATOR);

    const browser = new Browser();
    const login = await browser.follow((await authorizationRequest(shop, redirectUri)).url.href);
    const uid = /data-options-url="\/interaction\/([^/]+)\/passkey\/options"/.exec(login.body)?.[1] as string;
    const csrf = /data-passkey-login-area[^>]*data-csrf="([^"]+)"/.exec(login.body)?.[1] as string;
    const post = (path: string, body: unknown) => fetch(`${issuer}${path}`, {
      method: 'POST', body: JSON.stringify(body),
      headers: { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': csrf, cookie: browser.jar.header() },
    });
    const options = await (await post(`/interaction/${uid}/passkey/options`, {})).json();
    const res = await post(`/interaction/${uid}/passkey/verify`, { response: authenticator.authenticate(options as never) });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: 'account_disabled', message: expect.stringContaining('This account has been disabled') });
    expect((await auditOf(accountId, 'sign_in_refused_disabled'))?.data).toMatchObject({ method: 'passkey' });
  });

  it('answers a Google sign-in to a disabled account with the disabled page, over HTTP', async () => {
    const { accountId, email } = await signedUp();
    const subject = `g-${randomUUID()}`;
    await server.services.identities.link(undefined, accountId, { provider: 'google', issuer: google.issuer, subject, email, emailVerified: true, isPrivateEmail: false });
    await server.services.lifecycle.disableAccount(accountId, OPERATOR);
    google.nextUser({ sub: subject, email, email_verified: true });
    const browser = new Browser();
    const login = await browser.follow((await authorizationRequest(shop, redirectUri)).url.href);
    const page = await browser.follow(new URL(formAction(login.body, '/upstream/google'), server.services.config.issuer).href,
      { form: { _csrf: csrfOf(login.body) } }, (u) => u.startsWith(redirectUri));
    expect(page.res.status).toBe(403);
    expect(page.body).toContain('This account is disabled');
    expect((await auditOf(accountId, 'sign_in_refused_disabled'))?.data).toMatchObject({ method: 'upstream' });
  });

  it('sends no CIBA approval link to a disabled account (answered like an unknown address)', async () => {
    const { accountId, email } = await signedUp();
    const backend = await server.services.clients.add({
      client_name: 'Mini app', grant_types: [CIBA_GRANT], response_types: [], redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic', backchannel_token_delivery_mode: 'poll', require_auth_time: true,
    });
    await server.services.lifecycle.disableAccount(accountId, OPERATOR);
    const res = await fetch(`${server.services.config.issuer}/backchannel`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${encodeURIComponent(backend.client_id as string)}:${encodeURIComponent(backend.client_secret as string)}`).toString('base64')}`,
      },
      body: new URLSearchParams({ scope: 'openid', binding_message: 'SHOP-1', login_hint: email }),
    });
    expect(res.status).toBe(200);
    await server.services.ciba.idle();
    expect(sink.messages.filter((m) => m.to.includes(email) && /\/account\/ciba\//.test(m.text))).toEqual([]);
  });

  it('unlinks a provider, but never the last way to sign in', async () => {
    const { accountId } = await signedUp();
    await server.services.identities.link(undefined, accountId, { provider: 'google', issuer: 'https://accounts.google.test', subject: `g-${randomUUID()}`, emailVerified: true, isPrivateEmail: false });
    await expect(cli('accounts', 'unlink', accountId, 'apple')).rejects.toThrow('refused: no such account (or no such linked provider)');
    expect(await cli('accounts', 'unlink', accountId, 'google')).toMatchObject({ account: accountId, unlinked: 'google', appleTokenRevoked: false });
    expect(await server.services.identities.listForAccount(accountId)).toEqual([]);
    expect((await auditOf(accountId, 'upstream_unlinked'))?.data).toMatchObject({ actor: 'cli:alice', provider: 'google' });

    // Only Google left: it stays.
    await server.services.identities.link(undefined, accountId, { provider: 'google', issuer: 'https://accounts.google.test', subject: `g-${randomUUID()}`, emailVerified: true, isPrivateEmail: false });
    await server.services.db.pool.query('DELETE FROM account_emails WHERE account_id = $1', [accountId]);
    await expect(cli('accounts', 'unlink', accountId, 'google')).rejects.toThrow(/last way to sign in/);
    expect(await server.services.identities.listForAccount(accountId)).toHaveLength(1);
  });

  it('ends every session with back-channel logout and revokes the grants', async () => {
    const { accountId, sub, tokens } = await signedUp();
    const before = rp.logoutTokens.length;
    expect(await cli('accounts', 'end-sessions', accountId)).toMatchObject({ account: accountId, sessions: 1, grants: expect.any(Number) });
    expect(rp.logoutTokens.length).toBe(before + 1);
    await expect(oidc.fetchUserInfo(shop, tokens.access_token, sub)).rejects.toThrow();
    expect((await auditOf(accountId, 'sessions_ended'))?.data).toMatchObject({ actor: 'cli:alice', sessions: 1 });
    await expect(cli('accounts', 'end-sessions', randomUUID())).rejects.toThrow('refused: no such account');
  });

  it('deletes only with --yes, frees the address, keeps the scrubbed audit trail, and refuses a second time', async () => {
    const { accountId, email } = await signedUp();
    await expect(cli('accounts', 'delete', accountId)).rejects.toThrow(/usage: .*--yes/);
    expect(await server.services.accounts.findAccountById(accountId)).toBeDefined();
    expect(await cli('accounts', 'delete', accountId, '--yes')).toMatchObject({ deleted: accountId, sessions: 1, confirmationSentTo: email });
    expect(await server.services.accounts.findAccountById(accountId)).toBeUndefined();
    expect(await server.services.accounts.findAccountByVerifiedEmail({ address: email, key: email })).toBeUndefined();
    const deleted = await auditOf(accountId, 'account_deleted');
    expect(deleted?.data).toMatchObject({ actor: 'cli:alice', sessions: 1 });
    const trail = await server.services.accounts.listAuditEvents({ accountId, limit: 50 });
    expect(JSON.stringify(trail)).not.toContain(email);
    await expect(cli('accounts', 'delete', accountId, '--yes')).rejects.toThrow('refused: no such account');
    expect((await sink.nextMailTo(email)).subject).toBe('Your Tsunagi account was deleted');
    // The address is free: signing up with it makes a new account.
    const again = await signedUp(shop, email);
    expect(again.accountId).not.toBe(accountId);
  });

  it('the person\'s deletion needs a sign-in within 10 minutes and the ticked confirmation; refused, it changes nothing', async () => {
    const { accountId, browser } = await signedUp();
    const issuer = server.services.config.issuer;
    const confirm = await browser.request(`${issuer}/account/delete`);
    expect(confirm.res.status).toBe(200);
    // Not ticked: the page again, with the reason, and the account is still there.
    const unticked = await browser.request(`${issuer}/account/delete`, { form: { _csrf: csrfOf(confirm.body) } });
    expect(unticked.res.status).toBe(400);
    expect(unticked.body).toContain('Tick the box to confirm that you want to delete your account.');
    expect(await server.services.accounts.findAccountById(accountId)).toBeDefined();
    // Without a session: sign in first, then back here.
    const anonymous = await new Browser().request(`${issuer}/account/delete`);
    expect(anonymous.res.headers.get('location')).toBe('/account/login?return=%2Faccount%2Fdelete');
    // A sign-in older than 10 minutes: signed in again (prompt=login) before anything is shown or done.
    await server.services.db.pool.query(
      `UPDATE oidc_payloads SET payload = jsonb_set(payload, '{loginTs}', to_jsonb(extract(epoch FROM now())::bigint - 11 * 60))
       WHERE model = 'Session' AND payload->>'accountId' = $1`, [accountId]);
    const stale = await browser.request(`${issuer}/account/delete`, { form: { _csrf: csrfOf(confirm.body), confirm: 'yes' } });
    expect(stale.res.headers.get('location')).toBe('/account/login?return=%2Faccount%2Fdelete&reauth=1');
    const reauth = await browser.request(new URL(stale.res.headers.get('location') as string, issuer).href);
    expect(new URL(reauth.res.headers.get('location') as string).searchParams.get('prompt')).toBe('login');
    expect(await server.services.accounts.findAccountById(accountId)).toBeDefined();
  });

  it('exports the audit events of a period, as JSON lines, and audits the export', async () => {
    const { accountId } = await signedUp();
    const from = new Date(Date.now() - 3600_000).toISOString();
    const to = new Date(Date.now() + 60_000).toISOString();
    const lines = (await cli('accounts', 'audit-export', '--from', from, '--to', to, '--account', accountId)) as string;
    const events = lines.split('\n').map((l) => JSON.parse(l) as { type: string; accountId: string });
    expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(['signup', 'sign_in']));
    expect(events.every((e) => e.accountId === accountId)).toBe(true);
    expect((await auditOf(accountId, 'audit_exported'))?.data).toMatchObject({ actor: 'cli:alice', events: events.length });
    // A period before any of it is empty.
    expect(await cli('accounts', 'audit-export', '--from', '2001-01-01', '--to', '2001-02-01', '--account', accountId)).toBe('');
    await expect(cli('accounts', 'audit-export', '--from', to, '--to', from)).rejects.toThrow('usage: --to must be after --from');
    await expect(cli('accounts', 'audit-export', '--from', 'yesterday', '--to', to)).rejects.toThrow(/usage: --from needs a date/);
  });

  it('sweeps audit events older than AUDIT_RETENTION_DAYS (400 by default) and keeps the rest', async () => {
    expect(server.services.config.auditRetentionDays).toBe(400);
    const accountId = randomUUID();
    const insert = (daysAgo: number) => server.services.db.pool.query(
      `INSERT INTO audit_events (account_id, type, data, created_at) VALUES ($1, 'sign_in', '{}', now() - make_interval(days => $2))`, [accountId, daysAgo]);
    await insert(401);
    await insert(399);
    const swept = await cli('audit', 'sweep') as { swept: number };
    expect(swept.swept).toBeGreaterThanOrEqual(1);
    const left = await server.services.db.pool.query<{ age: number }>(
      `SELECT extract(day FROM now() - created_at)::int AS age FROM audit_events WHERE account_id = $1`, [accountId]);
    expect(left.rows.map((r) => r.age)).toEqual([399]);
  });

  it('the CLI entry refuses malformed accounts commands before touching the database', async () => {
    const config = testConfig({ DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' });
    await expect(run(['accounts', 'delete', randomUUID()], config)).rejects.toThrow(/--yes/);
    await expect(run(['accounts', 'find'], config)).rejects.toThrow(/exactly one of/);
    await expect(run(['accounts', 'find', '--email', 'a@b.test', '--phone', '+1'], config)).rejects.toThrow(/exactly one of/);
    await expect(run(['accounts', 'unlink', randomUUID(), 'line'], config)).rejects.toThrow(/google or apple/);
    await expect(run(['accounts', 'frobnicate'], config)).rejects.toThrow(/unknown accounts command/);
    await expect(run(['audit', 'purge'], config)).rejects.toThrow(/unknown audit command/);
  });
});
