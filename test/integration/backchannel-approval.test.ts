import { randomBytes, randomUUID } from 'node:crypto';
import { AccountStore } from '../../src/accounts/account-store.js';
import { CibaApprovalStore } from '../../src/accounts/ciba-approval-store.js';
import { parseEmailAddress, type EmailAddress } from '../../src/accounts/email-address.js';
import { withTransaction, type Database } from '../../src/db/database.js';
import { approvalLinkHash } from '../../src/accounts/ciba-approval-store.js';
import { BackchannelApproval, parseApprovalLinkSecret } from '../../src/flows/backchannel-approval.js';
import type { BackchannelResults } from '../../src/oidc/ciba.js';
import { openTestDatabase, uniqueEmail } from '../support/harness.js';

let db: Database;
let accounts: AccountStore;
let approvals: CibaApprovalStore;
beforeAll(async () => {
  db = await openTestDatabase();
  accounts = new AccountStore(db.pool);
  approvals = new CibaApprovalStore(db.pool);
});
afterAll(async () => { await db.close(); });

/** Records what would be handed to oidc-provider; `requestGone` plays a request that expired there first. */
class RecordedResults implements BackchannelResults {
  readonly approved: string[] = [];
  readonly refused: string[] = [];
  requestGone = false;
  async approve(authReqId: string) { if (this.requestGone) return false; this.approved.push(authReqId); return true; }
  async refuse(authReqId: string) { if (this.requestGone) return false; this.refused.push(authReqId); return true; }
}

const T0 = new Date('2030-01-01T10:00:00Z');
const seconds = (d: Date) => Math.floor(d.getTime() / 1000);

async function setup() {
  const account = await withTransaction(db.pool, (tx) => accounts.createAccountWithVerifiedEmail(tx, parseEmailAddress(uniqueEmail('approval')) as EmailAddress));
  const secret = randomBytes(32).toString('base64url');
  const authReqId = `req-${randomUUID()}`;
  await approvals.create({
    authReqId, accountId: account.id, clientId: 'shop', clientName: 'Shop', bindingMessage: 'AB-12', scope: 'openid email', channel: 'email',
    linkHash: approvalLinkHash(secret), createdAt: T0, expiresAt: new Date(T0.getTime() + 600_000),
  });
  let now = new Date(T0.getTime() + 60_000);
  const results = new RecordedResults();
  const flow = new BackchannelApproval({ approvals, results, now: () => now });
  const signedIn = { accountId: account.id, loginTs: seconds(T0) + 30, amr: ['otp'] };
  return { account, secret, authReqId, results, flow, signedIn, setNow: (d: Date) => { now = d; } };
}

describe('BackchannelApproval (CIBA approval links)', () => {
  it('asks to sign in first, then shows the request to the account it was sent to, and approves once', async () => {
    const s = await setup();
    expect(await s.flow.open(s.secret, undefined)).toEqual({ kind: 'sign_in', reauth: false });
    expect(await s.flow.open(s.secret, s.signedIn)).toMatchObject({ kind: 'ready', approval: { clientName: 'Shop', bindingMessage: 'AB-12' } });
    expect(await s.flow.decide(s.secret, s.signedIn, 'approved')).toMatchObject({ kind: 'decided', decision: 'approved' });
    expect(s.results.approved).toEqual([s.authReqId]);
    expect(await s.flow.decide(s.secret, s.signedIn, 'approved')).toEqual({ kind: 'invalid' });
    expect(await s.flow.decide(s.secret, s.signedIn, 'refused')).toEqual({ kind: 'invalid' });
    expect(s.results.approved).toEqual([s.authReqId]);
    expect(s.results.refused).toEqual([]);
  });

  it('decides only once when two submissions race', async () => {
    const s = await setup();
    const outcomes = await Promise.all([s.flow.decide(s.secret, s.signedIn, 'approved'), s.flow.decide(s.secret, s.signedIn, 'refused')]);
    expect(outcomes.filter((o) => o.kind === 'decided')).toHaveLength(1);
    expect(s.results.approved.length + s.results.refused.length).toBe(1);
  });

  it('requires a sign-in made after the request (an older session is not enough)', async () => {
    const s = await setup();
    const oldSession = { ...s.signedIn, loginTs: seconds(T0) - 1 };
    expect(await s.flow.open(s.secret, oldSession)).toEqual({ kind: 'sign_in', reauth: true });
    expect(await s.flow.decide(s.secret, oldSession, 'approved')).toEqual({ kind: 'sign_in', reauth: true });
    expect(s.results.approved).toEqual([]);
  });

  it('refuses another signed-in account', async () => {
    const s = await setup();
    const other = await withTransaction(db.pool, (tx) => accounts.createAccountWithVerifiedEmail(tx, parseEmailAddress(uniqueEmail('other')) as EmailAddress));
    const intruder = { ...s.signedIn, accountId: other.id };
    expect(await s.flow.open(s.secret, intruder)).toEqual({ kind: 'other_account' });
    expect(await s.flow.decide(s.secret, intruder, 'approved')).toEqual({ kind: 'other_account' });
    expect(s.results.approved).toEqual([]);
    // The rightful person can still decide.
    expect((await s.flow.decide(s.secret, s.signedIn, 'refused')).kind).toBe('decided');
  });

  it('treats an expired link like an unknown one', async () => {
    const s = await setup();
    s.setNow(new Date(T0.getTime() + 600_000));
    expect(await s.flow.open(s.secret, s.signedIn)).toEqual({ kind: 'invalid' });
    expect(await s.flow.decide(s.secret, s.signedIn, 'approved')).toEqual({ kind: 'invalid' });
    expect(await s.flow.open(randomBytes(32).toString('base64url'), s.signedIn)).toEqual({ kind: 'invalid' });
    expect(await s.flow.open(undefined, s.signedIn)).toEqual({ kind: 'invalid' });
    expect(s.results.approved).toEqual([]);
  });

  it('says the link is invalid when the request already expired at the token endpoint', async () => {
    const s = await setup();
    s.results.requestGone = true;
    expect(await s.flow.decide(s.secret, s.signedIn, 'approved')).toEqual({ kind: 'invalid' });
  });

  it('accepts only well-formed link secrets', () => {
    expect(parseApprovalLinkSecret(randomBytes(32).toString('base64url'))).toBeDefined();
    expect(parseApprovalLinkSecret('short')).toBeUndefined();
    expect(parseApprovalLinkSecret(`${randomBytes(32).toString('base64url')}/x`)).toBeUndefined();
    expect(parseApprovalLinkSecret(42)).toBeUndefined();
  });
});
