import type { Account } from '../../src/accounts/account-store.js';
import { parseEmailAddress, type EmailAddress } from '../../src/accounts/email-address.js';
import { withTransaction, type Database } from '../../src/db/database.js';
import {
  completeLink, confirmUpstreamSignup, decideAfterUpstreamLogin, linkFromAccountPage, parkUpstreamReturn, pendingUpstream, type UpstreamDeps,
} from '../../src/flows/upstream.js';
import type { Proof } from '../../src/accounts/proof.js';
import { appleIdentity } from '../../src/upstream/apple.js';
import { googleIdentity } from '../../src/upstream/google.js';
import type { UpstreamIdentityClaims } from '../../src/upstream/identity-claims.js';
import { describeBackends } from '../support/harness.js';
import { openUpstreamDeps } from '../support/upstream-deps.js';

// The security properties of federation (issue 4), at the level of the flow functions and the real
// database: each test fails if the property breaks, whatever the timing.
const GOOGLE = 'https://accounts.google.test';
const APPLE = 'https://appleid.apple.test';
const facts = { ip: '127.0.0.1', userAgent: 'jest', clientId: 'shop' };

let db: Database;
let deps: UpstreamDeps;
beforeAll(async () => { ({ db, deps } = await openUpstreamDeps()); }, 180_000);
afterAll(async () => { await db.close(); });

const unique = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
const uid = () => `ix-${unique()}`;
const gmail = () => `v.${unique()}@gmail.com`;
// Each identity carries a unique name, which a signup gives the account it creates: the shared test
// database has other files' accounts coming and going, so accounts are counted by that name.
const google = (email: string, verified: boolean | 'true' | 'false' = true, sub = `g-${unique()}`): UpstreamIdentityClaims =>
  googleIdentity(GOOGLE, { sub, email, email_verified: verified, name: `G ${unique()}` });
const apple = (email: string, over: Record<string, unknown> = {}, sub = `001.${unique()}`): UpstreamIdentityClaims =>
  appleIdentity(APPLE, { sub, email, email_verified: 'true', is_private_email: 'false', ...over }, { name: `A ${unique()}` });
const accountsFrom = async (...claims: UpstreamIdentityClaims[]) => {
  const { rows } = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM accounts WHERE name = ANY($1::text[])', [claims.map((c) => c.name)]);
  return Number(rows[0]?.n);
};
const accountWith = (address: string): Promise<Account> =>
  withTransaction(db.pool, (tx) => deps.accounts.createAccountWithVerifiedEmail(tx, parseEmailAddress(address) as EmailAddress));
const ownership = (interactionUid: string, accountId: string, method: Proof['method'] = 'email_otp'): Proof =>
  ({ interactionUid, method, amr: ['otp'], subject: { kind: 'account', accountId }, at: new Date() });
const linkedAccountOf = async (c: UpstreamIdentityClaims) => (await deps.identities.findByIssuerSubject(c.issuer, c.subject))?.accountId;
const accountsWithEmail = async (address: string) => {
  const { rows } = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM account_emails WHERE email_key = $1 AND verified_at IS NOT NULL',
    [(parseEmailAddress(address) as EmailAddress).key]);
  return Number(rows[0]?.n);
};

describe(`a proof is bound to its account and its interaction (${describeBackends()})`, () => {
  it('does not link when the ownership proof is for another account, and the link offer still waits for the right one', async () => {
    const victimEmail = gmail();
    const victim = await accountWith(victimEmail);
    const other = await accountWith(gmail());
    const claims = google(victimEmail);
    const x = uid();
    expect((await decideAfterUpstreamLogin(deps, claims, x)).next).toBe('offer_link');

    expect(await completeLink(deps, x, ownership(x, other.id), facts)).toEqual({ ok: false, reason: 'wrong_account' });
    expect(await linkedAccountOf(claims)).toBeUndefined();
    expect(await deps.identities.listForAccount(other.id)).toEqual([]);
    expect((await pendingUpstream(deps, x, 'upstream_link'))?.linkToAccountId).toBe(victim.id);
    // The right proof still works afterwards (the refusal did not use the offer up)...
    expect(await completeLink(deps, x, ownership(x, victim.id), facts)).toMatchObject({ ok: true, account: { id: victim.id } });
    expect(await linkedAccountOf(claims)).toBe(victim.id);
    // ...and only once.
    expect(await completeLink(deps, x, ownership(x, victim.id), facts)).toEqual({ ok: false, reason: 'no_pending_link' });
  });

  it('does not link when the proof was made in another interaction', async () => {
    const email = gmail();
    const owner = await accountWith(email);
    const claims = google(email);
    const [x, y] = [uid(), uid()];
    await decideAfterUpstreamLogin(deps, claims, x);
    // A proof of the right account, but made in interaction Y, presented to X.
    expect(await completeLink(deps, x, ownership(y, owner.id), facts)).toEqual({ ok: false, reason: 'wrong_account' });
    // The same proof presented in Y, where nothing waits: X's link offer is not reachable from Y.
    expect(await completeLink(deps, y, ownership(y, owner.id), facts)).toEqual({ ok: false, reason: 'no_pending_link' });
    expect(await linkedAccountOf(claims)).toBeUndefined();
    expect(await pendingUpstream(deps, x, 'upstream_link')).toBeDefined();
  });

  it('does not accept an email or phone proof in place of a proof of the account', async () => {
    const email = gmail();
    await accountWith(email);
    const claims = google(email);
    const x = uid();
    await decideAfterUpstreamLogin(deps, claims, x);
    const address = parseEmailAddress(email) as EmailAddress;
    const emailProof: Proof = { interactionUid: x, method: 'email_otp', amr: ['otp'], subject: { kind: 'email', address: address.address, key: address.key }, at: new Date() };
    expect(await completeLink(deps, x, emailProof, facts)).toEqual({ ok: false, reason: 'wrong_account' });
    const upstreamProof: Proof = { interactionUid: x, method: 'upstream', amr: ['fed'], subject: { kind: 'upstream', identity: { provider: 'google', issuer: GOOGLE, subject: claims.subject, emailVerified: true, emailTrustedForRegistration: true, isPrivateRelay: false } }, at: new Date() };
    expect(await completeLink(deps, x, upstreamProof, facts)).toEqual({ ok: false, reason: 'wrong_account' });
    expect(await linkedAccountOf(claims)).toBeUndefined();
  });

  it('does not confirm a signup parked in another interaction', async () => {
    const claims = google(gmail());
    const [x, y] = [uid(), uid()];
    await decideAfterUpstreamLogin(deps, claims, x);
    expect(await confirmUpstreamSignup(deps, y, facts)).toEqual({ ok: false, reason: 'no_pending_signup' });
    expect(await accountsFrom(claims)).toBe(0);
    expect(await linkedAccountOf(claims)).toBeUndefined();
  });

  it('links from the account page only the answer parked for that session and that account', async () => {
    const a = await accountWith(gmail());
    const b = await accountWith(gmail());
    const claims = apple(`${unique()}@privaterelay.appleid.com`, { is_private_email: 'true' });
    const sessionA = `account:${unique()}`;
    await parkUpstreamReturn(deps, sessionA, { kind: 'link_to_account', claims, accountId: a.id });
    // Another session, or the right session claiming another account: nothing.
    expect(await linkFromAccountPage(deps, `account:${unique()}`, a.id)).toEqual({ ok: false, reason: 'not_found' });
    expect(await linkFromAccountPage(deps, sessionA, b.id)).toEqual({ ok: false, reason: 'not_found' });
    expect(await linkedAccountOf(claims)).toBeUndefined();
    // The refused attempt by B's id used the answer up: a parked answer is single use, whoever takes it.
    expect(await linkFromAccountPage(deps, sessionA, a.id)).toEqual({ ok: false, reason: 'not_found' });
    expect(await linkedAccountOf(claims)).toBeUndefined();
  });
});

describe(`races end with exactly one account or link, decided by the database (${describeBackends()})`, () => {
  it('two signups with the same identity in two interactions: one account, one link', async () => {
    const claims = google(gmail());
    const [x, y] = [uid(), uid()];
    await decideAfterUpstreamLogin(deps, claims, x);
    await decideAfterUpstreamLogin(deps, claims, y);
    const results = await Promise.all([confirmUpstreamSignup(deps, x, facts), confirmUpstreamSignup(deps, y, facts)]);
    const winners = results.filter((r) => r.ok);
    expect(winners).toHaveLength(1);
    expect(results.filter((r) => !r.ok).map((r) => !r.ok && r.reason)).toEqual([expect.stringMatching(/^(already_linked|email_taken)$/)]);
    expect(await accountsFrom(claims)).toBe(1);
    expect(await linkedAccountOf(claims)).toBe(winners[0]?.ok && winners[0].account.id);
    expect(await accountsWithEmail(claims.email as string)).toBe(1);
  });

  it('a double submit of one signup confirmation creates one account', async () => {
    const claims = apple(`${unique()}@privaterelay.appleid.com`, { is_private_email: 'true' });
    const x = uid();
    await decideAfterUpstreamLogin(deps, claims, x);
    const results = await Promise.all([confirmUpstreamSignup(deps, x, facts), confirmUpstreamSignup(deps, x, facts), confirmUpstreamSignup(deps, x, facts)]);
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    expect(await accountsFrom(claims)).toBe(1);
  });

  it('two signups with different identities but the same vouched email (Google and Apple): one account has it', async () => {
    const email = gmail();
    const g = google(email);
    const a = apple(email);
    const [x, y] = [uid(), uid()];
    expect((await decideAfterUpstreamLogin(deps, g, x)).next).toBe('confirm_signup');
    expect((await decideAfterUpstreamLogin(deps, a, y)).next).toBe('confirm_signup');
    const [rg, ra] = await Promise.all([confirmUpstreamSignup(deps, x, facts), confirmUpstreamSignup(deps, y, facts)]);
    expect([rg, ra].filter((r) => r.ok)).toHaveLength(1);
    expect([rg, ra].filter((r) => !r.ok).map((r) => !r.ok && r.reason)).toEqual(['email_taken']);
    expect(await accountsWithEmail(email)).toBe(1);
    expect(await accountsFrom(g, a)).toBe(1);
    // The loser's identity is linked nowhere: starting again leads to the link offer, not a second account.
    const loser = rg.ok ? a : g;
    expect(await linkedAccountOf(loser)).toBeUndefined();
    expect((await decideAfterUpstreamLogin(deps, loser, uid())).next).toBe('offer_link');
  });

  it('two link completions of the same identity (two interactions, and a double submit): one link', async () => {
    const email = gmail();
    const owner = await accountWith(email);
    const claims = google(email);
    const [x, y] = [uid(), uid()];
    await decideAfterUpstreamLogin(deps, claims, x);
    await decideAfterUpstreamLogin(deps, claims, y);
    const results = await Promise.all([
      completeLink(deps, x, ownership(x, owner.id), facts), completeLink(deps, x, ownership(x, owner.id), facts),
      completeLink(deps, y, ownership(y, owner.id), facts),
    ]);
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    expect(await deps.identities.listForAccount(owner.id)).toHaveLength(1);
    expect(await linkedAccountOf(claims)).toBe(owner.id);
    expect(await deps.accounts.listAuditEvents({ accountId: owner.id, type: 'upstream_linked' })).toHaveLength(1);
  });

  it('the same identity linked from two accounts\' pages at once: linked to exactly one', async () => {
    const a = await accountWith(gmail());
    const b = await accountWith(gmail());
    const claims = google(`someone.${unique()}@example.org`);
    const [sa, sb] = [`account:${unique()}`, `account:${unique()}`];
    await parkUpstreamReturn(deps, sa, { kind: 'link_to_account', claims, accountId: a.id });
    await parkUpstreamReturn(deps, sb, { kind: 'link_to_account', claims, accountId: b.id });
    const results = await Promise.all([linkFromAccountPage(deps, sa, a.id), linkFromAccountPage(deps, sb, b.id)]);
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    expect(results.filter((r) => !r.ok).map((r) => !r.ok && r.reason)).toEqual(['already_linked']);
    const owners = [...(await deps.identities.listForAccount(a.id)), ...(await deps.identities.listForAccount(b.id))];
    expect(owners.map((i) => i.subject)).toEqual([claims.subject]);
  });

  it('a signup and an account-page link of the same identity at once: one of them, never both', async () => {
    const a = await accountWith(gmail());
    const claims = google(gmail());
    const x = uid();
    const session = `account:${unique()}`;
    await decideAfterUpstreamLogin(deps, claims, x);
    await parkUpstreamReturn(deps, session, { kind: 'link_to_account', claims, accountId: a.id });
    const [signup, link] = await Promise.all([confirmUpstreamSignup(deps, x, facts), linkFromAccountPage(deps, session, a.id)]);
    expect([signup.ok, link.ok].filter(Boolean)).toHaveLength(1);
    expect(await accountsFrom(claims)).toBe(signup.ok ? 1 : 0);
    expect(await linkedAccountOf(claims)).toBe(signup.ok ? signup.account.id : a.id);
  });

  it('two accounts linking two Google identities to one account at once: one Google per account', async () => {
    const a = await accountWith(gmail());
    const [s1, s2] = [`account:${unique()}`, `account:${unique()}`];
    await parkUpstreamReturn(deps, s1, { kind: 'link_to_account', claims: google(gmail()), accountId: a.id });
    await parkUpstreamReturn(deps, s2, { kind: 'link_to_account', claims: google(gmail()), accountId: a.id });
    const results = await Promise.all([linkFromAccountPage(deps, s1, a.id), linkFromAccountPage(deps, s2, a.id)]);
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    expect(results.filter((r) => !r.ok).map((r) => !r.ok && r.reason)).toEqual(['provider_already_linked']);
    expect(await deps.identities.listForAccount(a.id)).toHaveLength(1);
  });
});

describe(`unverified upstream emails never match and are never registered as verified (${describeBackends()})`, () => {
  it.each([
    ['Google, email_verified false', (e: string) => google(e, false)],
    ['Google, email_verified "false"', (e: string) => google(e, 'false')],
    ['Apple, email_verified "false"', (e: string) => apple(e, { email_verified: 'false' })],
    ['Apple, email_verified missing', (e: string) => apple(e, { email_verified: undefined })],
  ])('%s: no link offer to the owner, and the signup registers no email', async (_name, make) => {
    const email = gmail();
    const owner = await accountWith(email);
    const claims = make(email);
    const x = uid();
    const decision = await decideAfterUpstreamLogin(deps, claims, x);
    expect(decision.next).toBe('confirm_signup');
    expect(await pendingUpstream(deps, x, 'upstream_link')).toBeUndefined();
    const signup = await confirmUpstreamSignup(deps, x, facts);
    expect(signup.ok).toBe(true);
    if (!signup.ok) return;
    expect(signup.account.id).not.toBe(owner.id);
    expect(signup.account.emails).toEqual([]);
    expect(await accountsWithEmail(email)).toBe(1); // still only the owner's
    expect(await deps.identities.listForAccount(owner.id)).toEqual([]);
  });

  it('an unverified email with no owner is not registered either', async () => {
    const email = gmail();
    const x = uid();
    await decideAfterUpstreamLogin(deps, google(email, false), x);
    const signup = await confirmUpstreamSignup(deps, x, facts);
    expect(signup.ok && signup.account.emails).toEqual([]);
    expect(await accountsWithEmail(email)).toBe(0);
  });

  it('a relay address never matches, even one an account verified by code as its own email', async () => {
    const relay = `${unique()}@privaterelay.appleid.com`;
    const owner = await accountWith(relay); // e.g. typed on the require-email step and proven by a code
    const claims = apple(relay, { is_private_email: 'true' });
    const x = uid();
    expect((await decideAfterUpstreamLogin(deps, claims, x)).next).toBe('confirm_signup');
    const signup = await confirmUpstreamSignup(deps, x, facts);
    expect(signup.ok && signup.account.id).not.toBe(owner.id);
    expect(signup.ok && signup.account.emails).toEqual([]);
  });
});

describe(`an attacker's upstream account with the victim's email (${describeBackends()})`, () => {
  it('gets only the link offer: no sign-in, no link, no second account, without one of the victim\'s methods', async () => {
    const victimEmail = gmail();
    const victim = await accountWith(victimEmail);
    const attacker = await accountWith(gmail()); // the attacker's own Tsunagi account, which they can prove
    const claims = google(victimEmail); // Google vouches for the address (say, a recycled gmail)
    const x = uid();

    const decision = await decideAfterUpstreamLogin(deps, claims, x);
    expect(decision.next).toBe('offer_link');
    expect(decision.next === 'offer_link' && decision.account.id).toBe(victim.id);
    // The offer itself is no proof: nothing signs in (no sign_in decision), nothing is linked.
    expect(await linkedAccountOf(claims)).toBeUndefined();
    // Proving their own account, or presenting the upstream sign-in itself, does not link.
    expect(await completeLink(deps, x, ownership(x, attacker.id), facts)).toMatchObject({ ok: false });
    expect(await completeLink(deps, x, { ...ownership(x, victim.id), subject: { kind: 'email', address: victimEmail, key: victimEmail } }, facts)).toMatchObject({ ok: false });
    // No way around it through a signup with the victim's email from this interaction.
    expect(await confirmUpstreamSignup(deps, x, facts)).toEqual({ ok: false, reason: 'no_pending_signup' });
    expect(await linkedAccountOf(claims)).toBeUndefined();
    expect(await deps.identities.listForAccount(victim.id)).toEqual([]);
    expect(await accountsFrom(claims)).toBe(0);
    expect(await accountsWithEmail(victimEmail)).toBe(1);
    // Signing in again with the same attacker identity still is only an offer.
    expect((await decideAfterUpstreamLogin(deps, claims, uid())).next).toBe('offer_link');
  });
});
