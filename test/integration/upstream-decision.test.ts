import { randomUUID } from 'node:crypto';
import type { Account } from '../../src/accounts/account-store.js';
import { parseEmailAddress, type EmailAddress } from '../../src/accounts/email-address.js';
import type { UpstreamProviderName } from '../../src/accounts/upstream-identity-store.js';
import { withTransaction, type Database } from '../../src/db/database.js';
import {
  completeLink, confirmUpstreamSignup, decideAfterUpstreamLogin, linkOptionsFor, needsRequiredEmail, pendingUpstream, type UpstreamDeps,
} from '../../src/flows/upstream.js';
import type { Proof } from '../../src/accounts/proof.js';
import { appleIdentity } from '../../src/upstream/apple.js';
import { googleIdentity } from '../../src/upstream/google.js';
import type { UpstreamIdentityClaims } from '../../src/upstream/identity-claims.js';
import { describeBackends } from '../support/harness.js';
import { openUpstreamDeps } from '../support/upstream-deps.js';

const GOOGLE = 'https://accounts.google.test';
const APPLE = 'https://appleid.apple.test';
const facts = { ip: '127.0.0.1', userAgent: 'jest', clientId: 'shop' };

let db: Database;
let deps: UpstreamDeps;
beforeAll(async () => { ({ db, deps } = await openUpstreamDeps()); }, 180_000);
afterAll(async () => { await db.close(); });

const unique = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
const emailOf = (address: string) => parseEmailAddress(address) as EmailAddress;

async function accountWithVerifiedEmail(address: string): Promise<Account> {
  return withTransaction(db.pool, (tx) => deps.accounts.createAccountWithVerifiedEmail(tx, emailOf(address)));
}

/** An account that typed this address but never proved it (a row with verified_at null). */
async function accountWithUnverifiedEmail(address: string): Promise<Account> {
  const account = await withTransaction(db.pool, (tx) => deps.accounts.createAccount(tx));
  const email = emailOf(address);
  await db.pool.query(
    'INSERT INTO account_emails (id, account_id, email, email_key, is_primary, verified_at) VALUES ($1, $2, $3, $4, false, NULL)',
    [randomUUID(), account.id, email.address, email.key]);
  return (await deps.accounts.findAccountById(account.id)) as Account;
}

/** An email-code proof of owning `accountId`, made in `interactionUid`, as the link routes build it. */
function ownershipProof(interactionUid: string, accountId: string): Proof {
  return { interactionUid, method: 'email_otp', amr: ['otp'], subject: { kind: 'account', accountId }, at: new Date() };
}

/** Claims as the real Google / Apple mapping makes them from a verified ID token's payload. */
function claimsFrom(provider: UpstreamProviderName, payload: Record<string, unknown>): UpstreamIdentityClaims {
  const sub = `${provider}-${unique()}`;
  // A unique name, which a signup gives the account: the shared test database has other files'
  // accounts coming and going, so accounts made from these claims are counted by it.
  const name = `${provider} ${unique()}`;
  return provider === 'google' ? googleIdentity(GOOGLE, { sub, name, ...payload }) : appleIdentity(APPLE, { sub, ...payload }, { name });
}
async function accountsFrom(claims: UpstreamIdentityClaims): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM accounts WHERE name = $1', [claims.name]);
  return Number(rows[0]?.n);
}

/**
 * Every combination of what upstream says and what Tsunagi already has:
 * the ID token (provider, domain, email_verified, hd, relay) x an existing account with that email
 * (verified / unverified / none) x linked already -> the decision, what the resulting account holds,
 * and whether a client that requires an email must ask for one.
 */
type Existing = 'verified' | 'unverified' | 'none';
interface Row {
  name: string;
  provider: UpstreamProviderName;
  domain: string;
  payload: Record<string, unknown>;
  /** Tsunagi may match and register this email. */
  vouched: boolean;
}
const tokens: Row[] = [
  { name: 'Google gmail, verified', provider: 'google', domain: 'gmail.com', payload: { email_verified: true }, vouched: true },
  { name: 'Google gmail, verified as the string "true"', provider: 'google', domain: 'gmail.com', payload: { email_verified: 'true' }, vouched: true },
  { name: 'Google gmail, unverified', provider: 'google', domain: 'gmail.com', payload: { email_verified: false }, vouched: false },
  { name: 'Google Workspace (hd), verified', provider: 'google', domain: 'corp.example', payload: { email_verified: true, hd: 'corp.example' }, vouched: true },
  { name: 'Google Workspace (hd), unverified', provider: 'google', domain: 'corp.example', payload: { email_verified: false, hd: 'corp.example' }, vouched: false },
  { name: 'Google other domain without hd, verified', provider: 'google', domain: 'example.org', payload: { email_verified: true }, vouched: false },
  { name: 'Apple real address, verified', provider: 'apple', domain: 'icloud.com', payload: { email_verified: 'true', is_private_email: 'false' }, vouched: true },
  { name: 'Apple real address, unverified', provider: 'apple', domain: 'icloud.com', payload: { email_verified: 'false', is_private_email: 'false' }, vouched: false },
  { name: 'Apple relay (is_private_email), verified', provider: 'apple', domain: 'privaterelay.appleid.com', payload: { email_verified: 'true', is_private_email: 'true' }, vouched: false },
  { name: 'Apple relay domain without is_private_email', provider: 'apple', domain: 'privaterelay.appleid.com', payload: { email_verified: true }, vouched: false },
];
const cases = tokens.flatMap((t) => (['verified', 'unverified', 'none'] as Existing[]).flatMap((existing) => [false, true].map((linked) => ({ ...t, existing, linked }))));

describe(`the decision after an upstream sign-in (${describeBackends()})`, () => {
  it.each(cases)('$name; existing account email: $existing; linked: $linked', async ({ provider, domain, payload, vouched, existing, linked }) => {
    const address = `p.${unique()}@${domain}`;
    const claims = claimsFrom(provider, { email: address, ...payload });
    const holder = existing === 'verified' ? await accountWithVerifiedEmail(address)
      : existing === 'unverified' ? await accountWithUnverifiedEmail(address) : undefined;
    const linkedTo = linked ? await withTransaction(db.pool, (tx) => deps.accounts.createAccount(tx)) : undefined;
    if (linkedTo) {
      await deps.identities.link(undefined, linkedTo.id, {
        provider, issuer: claims.issuer, subject: claims.subject, email: null, emailVerified: false, isPrivateEmail: false,
      });
    }
    const uid = `ix-${unique()}`;
    const decision = await decideAfterUpstreamLogin(deps, claims, uid);

    // 1. Linked: that account, whatever the email says; upstream's attributes refreshed.
    if (linkedTo) {
      expect(decision.next).toBe('sign_in');
      if (decision.next !== 'sign_in') return;
      expect(decision.account.id).toBe(linkedTo.id);
      expect(decision.proof).toMatchObject({ interactionUid: uid, method: 'upstream', amr: ['fed'], subject: { kind: 'account', accountId: linkedTo.id } });
      expect((await deps.identities.findByIssuerSubject(claims.issuer, claims.subject))?.email).toBe(address);
      expect(await pendingUpstream(deps, uid, 'upstream_signup')).toBeUndefined();
      expect(await pendingUpstream(deps, uid, 'upstream_link')).toBeUndefined();
      // The account is unchanged (no email registered from upstream on sign-in) and requires-email follows from it.
      expect(decision.account.emails).toEqual([]);
      expect(await needsRequiredEmail(decision.account, async () => true)).toBe(true);
      return;
    }

    // 2. A vouched email equal to a *verified* account email: link offer for that account, nothing created.
    if (vouched && existing === 'verified') {
      expect(decision.next).toBe('offer_link');
      if (decision.next !== 'offer_link') return;
      expect(decision.account.id).toBe(holder?.id);
      expect((await pendingUpstream(deps, uid, 'upstream_link'))?.linkToAccountId).toBe(holder?.id);
      expect(await pendingUpstream(deps, uid, 'upstream_signup')).toBeUndefined();
      expect(await deps.identities.findByIssuerSubject(claims.issuer, claims.subject)).toBeUndefined();
      const linkedNow = await completeLink(deps, uid, ownershipProof(uid, holder?.id as string), facts);
      expect(linkedNow).toMatchObject({ ok: true, account: { id: holder?.id } });
      if (!linkedNow.ok) return;
      expect(linkedNow.proof.amr).toEqual(['fed', 'otp']);
      expect(await needsRequiredEmail(linkedNow.account, async () => true)).toBe(false);
      expect(await accountsFrom(claims)).toBe(0);
      return;
    }

    // 3. Otherwise a signup confirmation; nothing exists until it is confirmed.
    expect(decision.next).toBe('confirm_signup');
    expect(await pendingUpstream(deps, uid, 'upstream_link')).toBeUndefined();
    expect(await accountsFrom(claims)).toBe(0);
    const parked = await pendingUpstream(deps, uid, 'upstream_signup');
    expect(parked?.identity).toMatchObject({ provider, subject: claims.subject, email: address });
    const signup = await confirmUpstreamSignup(deps, uid, facts);
    expect(signup.ok).toBe(true);
    if (!signup.ok) return;
    expect(signup.account.id).not.toBe(holder?.id);
    expect((await deps.identities.findByIssuerSubject(claims.issuer, claims.subject))?.accountId).toBe(signup.account.id);
    if (vouched) {
      // Only reachable with no verified holder: the email is registered, verified and primary.
      expect(signup.account.emails).toEqual([expect.objectContaining({ address, isPrimary: true, verifiedAt: expect.any(Date) })]);
      expect(await needsRequiredEmail(signup.account, async () => true)).toBe(false);
    } else {
      // Unverified, unvouched or relay: never registered; a client that requires an email asks for one.
      expect(signup.account.emails).toEqual([]);
      expect(await needsRequiredEmail(signup.account, async () => true)).toBe(true);
      expect(await needsRequiredEmail(signup.account, async () => false)).toBe(false);
    }
    if (holder) expect((await deps.accounts.findAccountById(holder.id))?.emails.map((e) => Boolean(e.verifiedAt))).toEqual([existing === 'verified']);
  });

  it('signs up without any email when upstream gives none, and require-email then applies', async () => {
    const claims = claimsFrom('apple', {});
    const uid = `ix-${unique()}`;
    expect((await decideAfterUpstreamLogin(deps, claims, uid)).next).toBe('confirm_signup');
    const signup = await confirmUpstreamSignup(deps, uid, facts);
    expect(signup.ok && signup.account.emails).toEqual([]);
    expect(signup.ok && (await needsRequiredEmail(signup.account, async () => true))).toBe(true);
  });

  it('does not ask the client whether it requires an email when the account already has a verified one', async () => {
    const account = await accountWithVerifiedEmail(`p.${unique()}@example.test`);
    let asked = false;
    expect(await needsRequiredEmail(account, async () => { asked = true; return true; })).toBe(false);
    expect(asked).toBe(false);
  });

  it('a later upstream answer in the same interaction replaces the earlier decision', async () => {
    const address = `p.${unique()}@gmail.com`;
    const owner = await accountWithVerifiedEmail(address);
    const uid = `ix-${unique()}`;
    expect((await decideAfterUpstreamLogin(deps, claimsFrom('google', { email: address, email_verified: true }), uid)).next).toBe('offer_link');
    const second = claimsFrom('google', { email: `q.${unique()}@gmail.com`, email_verified: true });
    expect((await decideAfterUpstreamLogin(deps, second, uid)).next).toBe('confirm_signup');
    expect((await pendingUpstream(deps, uid, 'upstream_signup'))?.identity.subject).toBe(second.subject);
    const third = claimsFrom('google', { email: address, email_verified: true });
    await decideAfterUpstreamLogin(deps, third, uid);
    const pending = await pendingUpstream(deps, uid, 'upstream_link');
    expect(pending).toMatchObject({ linkToAccountId: owner.id, identity: { subject: third.subject } });
  });
});

describe(`linkOptionsFor: the target account's own methods, masked (${describeBackends()})`, () => {
  async function richAccount() {
    const primary = `taro.${unique()}@example.test`;
    const account = await accountWithVerifiedEmail(primary);
    const unverified = `pending.${unique()}@example.test`;
    const e = emailOf(unverified);
    await db.pool.query('INSERT INTO account_emails (id, account_id, email, email_key, is_primary, verified_at) VALUES ($1, $2, $3, $4, false, NULL)',
      [randomUUID(), account.id, e.address, e.key]);
    const phone = `+8190${String(Math.floor(Math.random() * 1e8)).padStart(8, '0')}`;
    await withTransaction(db.pool, (tx) => deps.accounts.addVerifiedPhone(tx, account.id, phone));
    return { account: (await deps.accounts.findAccountById(account.id)) as Account, primary, phone };
  }
  const optionsDeps = (passkeys: number) => ({ accounts: deps.accounts, identities: deps.identities, passkeyCount: async () => passkeys });
  const linkGoogle = async (accountId: string, email: string | null = null) => deps.identities.link(undefined, accountId, {
    provider: 'google', issuer: GOOGLE, subject: `g-${unique()}`, email, emailVerified: true, isPrivateEmail: false,
  });
  const linkApple = async (accountId: string, email: string | null) => deps.identities.link(undefined, accountId, {
    provider: 'apple', issuer: APPLE, subject: `001.${unique()}`, email, emailVerified: true, isPrivateEmail: true,
  });

  it('offers verified emails and phones (masked), passkeys, and the linked other provider with its login_hint', async () => {
    const { account, primary, phone } = await richAccount();
    const google = await linkGoogle(account.id, 'taro@gmail.com');
    const options = await linkOptionsFor(optionsDeps(2), account, { sms: true, providers: ['google', 'apple'] }, 'apple');
    expect(options.emails).toEqual([{ key: emailOf(primary).key, masked: { shown: `t•••@example.test`, spoken: { key: 'masked.email', vars: { first: 't', domain: 'example.test' } } } }]);
    expect(options.phones).toEqual([{ phone, masked: { shown: `•••-••••-${phone.slice(-4)}`, spoken: { key: 'masked.phone', vars: { last: phone.slice(-4).split('').join(' ') } } } }]);
    expect(options.passkey).toBe(true);
    expect(options.upstream).toEqual([{ provider: 'google', subject: google.subject, loginHint: google.subject }]);
    // Nothing unmasked leaks into what the page shows.
    expect(JSON.stringify(options.emails.map((o) => o.masked))).not.toContain(primary);
  });

  it('offers no SMS when SMS is not available, and no passkey when the account has none', async () => {
    const { account } = await richAccount();
    const options = await linkOptionsFor(optionsDeps(0), account, { sms: false, providers: ['google', 'apple'] }, 'google');
    expect(options.phones).toEqual([]);
    expect(options.passkey).toBe(false);
    expect(options.emails).toHaveLength(1);
  });

  it('never offers the provider the person came from, nor a provider that is not enabled, nor one not linked', async () => {
    const { account } = await richAccount();
    const apple = await linkApple(account.id, 'x@privaterelay.appleid.com');
    // Came from Google: the linked Apple is offered (login_hint: Apple's stored email) when Apple is enabled.
    expect((await linkOptionsFor(optionsDeps(0), account, { sms: true, providers: ['google', 'apple'] }, 'google')).upstream)
      .toEqual([{ provider: 'apple', subject: apple.subject, loginHint: 'x@privaterelay.appleid.com' }]);
    // Apple turned off: not offered.
    expect((await linkOptionsFor(optionsDeps(0), account, { sms: true, providers: ['google'] }, 'google')).upstream).toEqual([]);
    // Came from (another) Apple ID: the linked Apple is not a proof for it.
    expect((await linkOptionsFor(optionsDeps(0), account, { sms: true, providers: ['google', 'apple'] }, 'apple')).upstream).toEqual([]);
    // An account with no linked identity offers no upstream at all.
    const { account: plain } = await richAccount();
    expect((await linkOptionsFor(optionsDeps(0), plain, { sms: true, providers: ['google', 'apple'] }, 'apple')).upstream).toEqual([]);
  });

  it('falls back to the Apple subject as login_hint when the linked Apple identity has no email', async () => {
    const { account } = await richAccount();
    const apple = await linkApple(account.id, null);
    expect((await linkOptionsFor(optionsDeps(0), account, { sms: true, providers: ['google', 'apple'] }, 'google')).upstream[0]?.loginHint).toBe(apple.subject);
  });
});
