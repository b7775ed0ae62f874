import { parseEmailAddress, type EmailAddress } from '../../src/accounts/email-address.js';
import type { UpstreamProviderName } from '../../src/accounts/upstream-identity-store.js';
import { withTransaction, type Database } from '../../src/db/database.js';
import { decideAfterUpstreamLogin, pendingUpstream, SIGN_IN_ONLY_UNLINKED, type UpstreamDeps } from '../../src/flows/upstream.js';
import { appleIdentity } from '../../src/upstream/apple.js';
import { googleIdentity } from '../../src/upstream/google.js';
import type { UpstreamIdentityClaims } from '../../src/upstream/identity-claims.js';
import { describeBackends } from '../support/harness.js';
import { openUpstreamDeps } from '../support/upstream-deps.js';

const GOOGLE = 'https://accounts.google.test';
const APPLE = 'https://appleid.apple.test';

let db: Database;
let deps: UpstreamDeps;
beforeAll(async () => { ({ db, deps } = await openUpstreamDeps()); }, 180_000);
afterAll(async () => { await db.close(); });

const unique = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;

function claimsFrom(provider: UpstreamProviderName, email: string, payload: Record<string, unknown>): UpstreamIdentityClaims {
  const sub = `${provider}-${unique()}`;
  const name = `${provider} ${unique()}`;
  return provider === 'google'
    ? googleIdentity(GOOGLE, { sub, name, email, ...payload })
    : { ...appleIdentity(APPLE, { sub, email, ...payload }, { name }), refreshToken: `apple-rt-${unique()}` };
}

/** What the decision may have written for these claims: accounts named after them, their identity, parked decisions, audit rows. */
async function writtenFor(claims: UpstreamIdentityClaims, uid: string, holderId: string | undefined) {
  const count = async (sql: string, params: unknown[]) => Number((await db.pool.query<{ n: string }>(sql, params)).rows[0]?.n);
  return {
    accounts: await count('SELECT count(*) AS n FROM accounts WHERE name = $1', [claims.name]),
    identity: await deps.identities.findByIssuerSubject(claims.issuer, claims.subject),
    link: await pendingUpstream(deps, uid, 'upstream_link'),
    signup: await pendingUpstream(deps, uid, 'upstream_signup'),
    audit: holderId ? await count('SELECT count(*) AS n FROM audit_events WHERE account_id = $1', [holderId]) : 0,
  };
}

// upstream_policy signin_only over the same upstream answers as the full decision's matrix: a linked
// identity signs in and takes no profile data; anything unlinked is refused, with nothing written.
const answers: Array<{ name: string; provider: UpstreamProviderName; domain: string; payload: Record<string, unknown> }> = [
  { name: 'Google gmail, verified (would be matched)', provider: 'google', domain: 'gmail.com', payload: { email_verified: true } },
  { name: 'Google Workspace (hd), verified', provider: 'google', domain: 'corp.example', payload: { email_verified: true, hd: 'corp.example' } },
  { name: 'Google other domain, unverified', provider: 'google', domain: 'example.org', payload: { email_verified: false } },
  { name: 'Apple real address, verified (would be matched)', provider: 'apple', domain: 'icloud.com', payload: { email_verified: 'true', is_private_email: 'false' } },
  { name: 'Apple relay', provider: 'apple', domain: 'privaterelay.appleid.com', payload: { email_verified: 'true', is_private_email: 'true' } },
];
const cases = answers.flatMap((a) => [true, false].flatMap((holderExists) => [false, true].map((linked) => ({ ...a, holderExists, linked }))));

describe(`upstream_policy signin_only (${describeBackends()})`, () => {
  it.each(cases)('$name; an account has the email: $holderExists; linked: $linked', async ({ provider, domain, payload, holderExists, linked }) => {
    const address = `p.${unique()}@${domain}`;
    const claims = claimsFrom(provider, address, payload);
    const holder = holderExists
      ? await withTransaction(db.pool, (tx) => deps.accounts.createAccountWithVerifiedEmail(tx, parseEmailAddress(address) as EmailAddress))
      : undefined;
    const linkedTo = linked ? await withTransaction(db.pool, (tx) => deps.accounts.createAccount(tx)) : undefined;
    if (linkedTo) {
      await deps.identities.link(undefined, linkedTo.id, {
        provider, issuer: claims.issuer, subject: claims.subject, email: 'linked-on-account-page@example.test', emailVerified: true, isPrivateEmail: false, name: 'Name at linking',
      });
    }
    const uid = `ix-${unique()}`;
    const decision = await decideAfterUpstreamLogin(deps, claims, uid, 'signin_only');

    if (linkedTo) {
      expect(decision).toMatchObject({ next: 'sign_in', account: { id: linkedTo.id }, proof: { interactionUid: uid, amr: ['fed'] } });
      // No profile data taken: the identity keeps what it had when it was linked; Apple's refresh token is kept (deletion revokes it).
      const identity = await deps.identities.findByIssuerSubject(claims.issuer, claims.subject);
      expect(identity).toMatchObject({ email: 'linked-on-account-page@example.test', emailVerified: true, name: 'Name at linking', hasRefreshToken: provider === 'apple' });
      expect((await deps.accounts.findAccountById(linkedTo.id))?.emails).toEqual([]);
      return;
    }
    expect(decision).toEqual({ next: 'refused', reason: SIGN_IN_ONLY_UNLINKED });
    expect(await writtenFor(claims, uid, holder?.id)).toEqual({ accounts: 0, identity: undefined, link: undefined, signup: undefined, audit: 0 });
  });

  it('the default stays full: the same unlinked, vouched answer is offered the link', async () => {
    const address = `p.${unique()}@gmail.com`;
    const holder = await withTransaction(db.pool, (tx) => deps.accounts.createAccountWithVerifiedEmail(tx, parseEmailAddress(address) as EmailAddress));
    const decision = await decideAfterUpstreamLogin(deps, claimsFrom('google', address, { email_verified: true }), `ix-${unique()}`);
    expect(decision).toMatchObject({ next: 'offer_link', account: { id: holder.id } });
  });
});
