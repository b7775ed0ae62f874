import { randomUUID } from 'node:crypto';
import { AccountStore } from '../../src/accounts/account-store.js';
import { parseEmailAddress, type EmailAddress } from '../../src/accounts/email-address.js';
import {
  IdentityAlreadyLinked, ProviderAlreadyLinkedToAccount, UpstreamIdentityStore, UpstreamTokenCipher, type NewUpstreamIdentity,
} from '../../src/accounts/upstream-identity-store.js';
import { UpstreamLoginStore, upstreamStateHash } from '../../src/accounts/upstream-login-store.js';
import { withTransaction, type Database } from '../../src/db/database.js';
import { developmentMasterKeyring } from '../../src/secrets/master-key.js';
import { describeBackends, openTestDatabase, uniqueEmail } from '../support/harness.js';

let db: Database;
let accounts: AccountStore;
let identities: UpstreamIdentityStore;
let logins: UpstreamLoginStore;
beforeAll(async () => {
  db = await openTestDatabase();
  accounts = new AccountStore(db.pool);
  identities = await UpstreamIdentityStore.open(db.pool, developmentMasterKeyring());
  logins = new UpstreamLoginStore(db.pool);
});
afterAll(async () => { await db.close(); });

const newAccount = async () => withTransaction(db.pool, (tx) => accounts.createAccountWithVerifiedEmail(tx, parseEmailAddress(uniqueEmail('up')) as EmailAddress));
const googleIdentity = (over: Partial<NewUpstreamIdentity> = {}): NewUpstreamIdentity => ({
  provider: 'google', issuer: 'https://accounts.google.test', subject: randomUUID(), email: uniqueEmail('g'), emailVerified: true, isPrivateEmail: false, ...over,
});

describe(`UpstreamIdentityStore (${describeBackends()})`, () => {
  it('finds a linked identity by (issuer, subject), not by email', async () => {
    const account = await newAccount();
    const identity = googleIdentity({ name: 'Hanako' });
    const linked = await identities.link(undefined, account.id, identity);
    expect(linked).toMatchObject({ accountId: account.id, provider: 'google', subject: identity.subject, email: identity.email, name: 'Hanako', hasRefreshToken: false });
    expect((await identities.findByIssuerSubject(identity.issuer, identity.subject))?.id).toBe(linked.id);
    expect(await identities.findByIssuerSubject('https://other.issuer.test', identity.subject)).toBeUndefined();
    expect((await identities.listForAccount(account.id)).map((i) => i.id)).toEqual([linked.id]);
  });

  it('refuses an identity already linked to another account, naming the owner', async () => {
    const [owner, other] = [await newAccount(), await newAccount()];
    const identity = googleIdentity();
    await identities.link(undefined, owner.id, identity);
    const err = await identities.link(undefined, other.id, identity).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IdentityAlreadyLinked);
    expect((err as IdentityAlreadyLinked).ownerAccountId).toBe(owner.id);
    expect(await identities.listForAccount(other.id)).toEqual([]);
  });

  it('refuses a second Google identity on one account and keeps the transaction usable', async () => {
    const account = await newAccount();
    await identities.link(undefined, account.id, googleIdentity());
    const count = await withTransaction(db.pool, async (tx) => {
      await expect(identities.link(tx, account.id, googleIdentity())).rejects.toBeInstanceOf(ProviderAlreadyLinkedToAccount);
      // Still usable: an Apple identity goes in within the same transaction.
      await identities.link(tx, account.id, googleIdentity({ provider: 'apple', issuer: 'https://appleid.apple.test' }));
      return (await identities.listForAccount(account.id, tx)).length;
    });
    expect(count).toBe(2);
  });

  it('lets exactly one of two concurrent links of the same identity win', async () => {
    const [a, b] = [await newAccount(), await newAccount()];
    const identity = googleIdentity();
    const results = await Promise.allSettled([
      withTransaction(db.pool, (tx) => identities.link(tx, a.id, identity)),
      withTransaction(db.pool, (tx) => identities.link(tx, b.id, identity)),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(rejected).toHaveLength(1);
    expect(rejected[0]?.reason).toBeInstanceOf(IdentityAlreadyLinked);
    const { rows } = await db.pool.query('SELECT account_id FROM upstream_identities WHERE issuer = $1 AND subject = $2', [identity.issuer, identity.subject]);
    expect(rows).toHaveLength(1);
  });

  it('seals the Apple refresh token at rest and hands it back on unlink', async () => {
    const account = await newAccount();
    const token = `r${randomUUID()}.0.apple`;
    const linked = await identities.link(undefined, account.id, googleIdentity({ provider: 'apple', issuer: 'https://appleid.apple.test', refreshToken: token }));
    expect(linked.hasRefreshToken).toBe(true);
    const { rows } = await db.pool.query<{ refresh_token_ciphertext: Buffer }>('SELECT refresh_token_ciphertext FROM upstream_identities WHERE id = $1', [linked.id]);
    const sealed = rows[0]?.refresh_token_ciphertext as Buffer;
    expect(sealed.includes(Buffer.from(token))).toBe(false);
    expect(await identities.refreshTokensForAccount(account.id)).toEqual([expect.objectContaining({ refreshToken: token })]);
    expect(await identities.unlink(randomUUID(), linked.id)).toBeUndefined(); // not the owner: nothing happens
    const unlinked = await identities.unlink(account.id, linked.id);
    expect(unlinked?.refreshToken).toBe(token);
    expect(await identities.listForAccount(account.id)).toEqual([]);
  });

  it('does not open a sealed token under another identity id or another key', () => {
    const key = Buffer.alloc(32, 7);
    const cipher = new UpstreamTokenCipher(key);
    const sealed = cipher.seal('secret-token', 'id-1');
    expect(cipher.open(sealed, 'id-1')).toBe('secret-token');
    expect(() => cipher.open(sealed, 'id-2')).toThrow();
    expect(() => new UpstreamTokenCipher(Buffer.alloc(32, 8)).open(sealed, 'id-1')).toThrow();
    const tampered = Buffer.from(sealed);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] as number) ^ 1;
    expect(() => cipher.open(tampered, 'id-1')).toThrow();
  });

  it('refreshes email and relay flag at sign-in, keeps the name Apple sent only once', async () => {
    const account = await newAccount();
    const linked = await identities.link(undefined, account.id, googleIdentity({ provider: 'apple', issuer: 'https://appleid.apple.test', name: 'Taro Yamada' }));
    await identities.setEmailDeliverable(linked.issuer, linked.subject, false);
    const later = new Date(Date.now() + 60_000);
    const refreshed = await identities.refreshAttributes(linked.id, { email: 'abc@privaterelay.appleid.com', emailVerified: true, isPrivateEmail: true }, later);
    expect(refreshed).toMatchObject({ email: 'abc@privaterelay.appleid.com', isPrivateEmail: true, name: 'Taro Yamada', emailDeliverable: true });
    expect(refreshed?.lastLoginAt.getTime()).toBe(later.getTime());
    const unchanged = await identities.refreshAttributes(linked.id, { emailVerified: false, isPrivateEmail: false }, later);
    expect(unchanged).toMatchObject({ email: 'abc@privaterelay.appleid.com', emailVerified: true, isPrivateEmail: true });
  });

  it('removes identities with their account', async () => {
    const account = await newAccount();
    const linked = await identities.link(undefined, account.id, googleIdentity());
    await db.pool.query('DELETE FROM accounts WHERE id = $1', [account.id]);
    expect(await identities.findByIssuerSubject(linked.issuer, linked.subject)).toBeUndefined();
  });
});

describe(`UpstreamLoginStore (${describeBackends()})`, () => {
  const pending = (over: Partial<Parameters<UpstreamLoginStore['create']>[2]> = {}) => ({
    interactionUid: randomUUID(), provider: 'google' as const, nonce: 'n', codeVerifier: 'v', redirectUri: 'http://127.0.0.1/cb',
    purpose: 'login' as const, expectedAccountId: null, expectedSubject: null, expiresAt: new Date(Date.now() + 600_000), ...over,
  });

  it('stores only hashes of the state and the browser binding, and hands the login out once', async () => {
    const [state, binding] = [randomUUID(), randomUUID()];
    const login = pending();
    await logins.create(state, binding, login);
    const { rows } = await db.pool.query('SELECT state_hash, browser_binding_hash FROM upstream_logins WHERE interaction_uid = $1', [login.interactionUid]);
    expect(rows).toEqual([{ state_hash: upstreamStateHash(state), browser_binding_hash: expect.stringMatching(/^[\w-]{43}$/) }]);
    expect(JSON.stringify(rows)).not.toContain(binding);
    const first = await logins.consume(state, binding);
    expect(first).toMatchObject({ ok: true, login: { interactionUid: login.interactionUid, nonce: 'n', codeVerifier: 'v' } });
    expect(await logins.consume(state, binding)).toEqual({ ok: false, why: 'replayed' });
  });

  it('consumes nothing for another browser\'s binding or none, and the browser that began it still can', async () => {
    const [state, binding] = [randomUUID(), randomUUID()];
    await logins.create(state, binding, pending({ purpose: 'login' }));
    expect(await logins.consume(state, randomUUID())).toEqual({ ok: false, why: 'other_browser', purpose: 'login' });
    expect(await logins.consume(state, undefined)).toEqual({ ok: false, why: 'other_browser', purpose: 'login' });
    expect(await logins.consume(state, '')).toEqual({ ok: false, why: 'other_browser', purpose: 'login' });
    expect(await logins.consume(state, binding)).toMatchObject({ ok: true });
  });

  it('gives a login to exactly one of several concurrent callbacks', async () => {
    const [state, binding] = [randomUUID(), randomUUID()];
    await logins.create(state, binding, pending());
    const outcomes = await Promise.all([1, 2, 3, 4].map(() => logins.consume(state, binding)));
    expect(outcomes.filter((o) => o.ok)).toHaveLength(1);
  });

  it('refuses an expired login and an unknown state', async () => {
    const [state, binding] = [randomUUID(), randomUUID()];
    await logins.create(state, binding, pending({ expiresAt: new Date(Date.now() + 1000) }));
    expect(await logins.consume(state, binding, new Date(Date.now() + 2000))).toEqual({ ok: false, why: 'expired' });
    expect(await logins.consume(randomUUID(), binding)).toEqual({ ok: false, why: 'unknown' });
  });

  it('refuses a link proof without the account it proves', async () => {
    await expect(logins.create(randomUUID(), randomUUID(), pending({ purpose: 'link_proof' }))).rejects.toThrow();
  });

  it('holds a form_post answer for a live login of its provider only, and gives it back once, by its reference', async () => {
    const state = randomUUID();
    await logins.create(state, randomUUID(), pending({ provider: 'apple' }));
    const soon = new Date(Date.now() + 120_000);
    const params = { state, code: 'c-1', user: '{"name":{"firstName":"Ren"}}' };
    expect(await logins.holdAnswer('google', state, params, randomUUID(), soon)).toEqual({ ok: false, why: 'unknown' });
    expect(await logins.holdAnswer('apple', randomUUID(), params, randomUUID(), soon)).toEqual({ ok: false, why: 'unknown' });
    const reference = randomUUID();
    expect(await logins.holdAnswer('apple', state, params, reference, soon)).toEqual({ ok: true });
    const { rows } = await db.pool.query('SELECT reference_hash FROM upstream_answers WHERE state_hash = $1', [upstreamStateHash(state)]);
    expect(rows).toHaveLength(1);
    expect(JSON.stringify(rows)).not.toContain(reference);
    expect(await logins.takeAnswer('google', reference)).toBeUndefined();
    expect(await logins.takeAnswer('apple', reference)).toEqual(params);
    expect(await logins.takeAnswer('apple', reference)).toBeUndefined();
    // An expired hold is not given back, and a consumed or expired login takes no new hold.
    const late = randomUUID();
    await logins.holdAnswer('apple', state, params, late, soon);
    expect(await logins.takeAnswer('apple', late, new Date(soon.getTime() + 1000))).toBeUndefined();
    expect(await logins.holdAnswer('apple', state, params, randomUUID(), soon, new Date(Date.now() + 700_000))).toEqual({ ok: false, why: 'expired' });
  });
});
