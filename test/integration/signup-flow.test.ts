import { randomUUID } from 'node:crypto';
import { AccountStore } from '../../src/accounts/account-store.js';
import { parseEmailAddress, type EmailAddress } from '../../src/accounts/email-address.js';
import { ProofStore } from '../../src/accounts/proof-store.js';
import { withTransaction, type Database } from '../../src/db/database.js';
import { completeSignIn, decideAfterEmailProof, SIGNUP_CONFIRMATION_TTL_SECONDS } from '../../src/flows/login.js';
import { cancelSignup, confirmSignup } from '../../src/flows/signup.js';
import type { Proof } from '../../src/accounts/proof.js';
import { openTestDatabase, uniqueEmail } from '../support/harness.js';

let db: Database;
let accounts: AccountStore;
let proofs: ProofStore;
beforeAll(async () => {
  db = await openTestDatabase();
  accounts = new AccountStore(db.pool);
  proofs = new ProofStore(db.pool);
});
afterAll(async () => { await db.close(); });

const facts = { ip: '203.0.113.9', userAgent: 'jest', clientId: 'flow-test-client' };

function emailProof(interactionUid: string, email: EmailAddress, at = new Date()): Proof {
  return { interactionUid, method: 'email_otp', amr: ['otp'], subject: { kind: 'email', address: email.address, key: email.key }, at };
}

const newEmail = (tag: string) => parseEmailAddress(uniqueEmail(tag)) as EmailAddress;
const newUid = () => `int-${randomUUID()}`;

async function emailRows(key: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM account_emails WHERE email_key = $1', [key]);
  return Number(rows[0]?.n);
}

describe('decideAfterEmailProof', () => {
  it('signs in the account whose verified email was proven', async () => {
    const email = newEmail('existing');
    const account = await withTransaction(db.pool, (tx) => accounts.createAccountWithVerifiedEmail(tx, email));
    const uid = newUid();
    const proofForOtherCase = emailProof(uid, parseEmailAddress(email.address.toUpperCase()) as EmailAddress);
    const decision = await decideAfterEmailProof({ accounts, proofs }, proofForOtherCase);
    expect(decision.next).toBe('sign_in');
    expect(decision.next === 'sign_in' && decision.account.id).toBe(account.id);
    expect(await proofs.peek(uid, 'signup', new Date())).toBeUndefined();
  });

  it('parks a signup proof for the interaction when no account has the email, and creates nothing', async () => {
    const email = newEmail('newcomer');
    const uid = newUid();
    const decision = await decideAfterEmailProof({ accounts, proofs }, emailProof(uid, email));
    expect(decision).toEqual({ next: 'confirm_signup', email: email.address });
    const parked = await proofs.peek(uid, 'signup', new Date());
    expect(parked?.proof.subject).toEqual({ kind: 'email', address: email.address, key: email.key });
    expect(parked?.proof.amr).toEqual(['otp']);
    expect(await emailRows(email.key)).toBe(0);
  });

  it('does not sign in an account whose matching email is unverified', async () => {
    const email = newEmail('unverified');
    const id = randomUUID();
    await db.pool.query('INSERT INTO accounts (id) VALUES ($1)', [id]);
    await db.pool.query('INSERT INTO account_emails (id, account_id, email, email_key, is_primary) VALUES ($1, $2, $3, $4, true)', [randomUUID(), id, email.address, email.key]);
    const decision = await decideAfterEmailProof({ accounts, proofs }, emailProof(newUid(), email));
    expect(decision.next).toBe('confirm_signup');
  });

  it('refuses a proof that is not about an email', async () => {
    const proof: Proof = { interactionUid: newUid(), method: 'passkey', amr: ['hwk'], subject: { kind: 'account', accountId: randomUUID() }, at: new Date() };
    await expect(decideAfterEmailProof({ accounts, proofs }, proof)).rejects.toThrow(TypeError);
  });
});

describe('confirmSignup', () => {
  it('creates the account with the proven address as its verified primary email', async () => {
    const email = newEmail('signup');
    const uid = newUid();
    await decideAfterEmailProof({ accounts, proofs }, emailProof(uid, email));
    const outcome = await confirmSignup({ pool: db.pool, accounts, proofs }, uid, facts);
    if (!outcome.ok) throw new Error(`signup failed: ${outcome.reason}`);
    expect(outcome.created).toBe(true);
    expect(outcome.proof.interactionUid).toBe(uid);
    expect(outcome.account.emails).toEqual([{ address: email.address, key: email.key, isPrimary: true, verifiedAt: expect.any(Date) }]);
    const found = await accounts.findAccountByVerifiedEmail(email);
    expect(found?.id).toBe(outcome.account.id);
    const audit = await accounts.listAuditEvents({ accountId: outcome.account.id, type: 'signup' });
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ clientId: facts.clientId, ip: facts.ip, data: { method: 'email_otp' } });
  });

  it('consumes the parked proof once: a second confirmation finds no pending signup', async () => {
    const email = newEmail('twice');
    const uid = newUid();
    await decideAfterEmailProof({ accounts, proofs }, emailProof(uid, email));
    expect((await confirmSignup({ pool: db.pool, accounts, proofs }, uid, facts)).ok).toBe(true);
    expect(await confirmSignup({ pool: db.pool, accounts, proofs }, uid, facts)).toEqual({ ok: false, reason: 'no_pending_signup' });
    expect(await emailRows(email.key)).toBe(1);
  });

  it('does not confirm from interaction Y a signup proven in interaction X', async () => {
    const email = newEmail('crossed');
    const x = newUid();
    const y = newUid();
    await decideAfterEmailProof({ accounts, proofs }, emailProof(x, email));
    expect(await confirmSignup({ pool: db.pool, accounts, proofs }, y, facts)).toEqual({ ok: false, reason: 'no_pending_signup' });
    expect(await emailRows(email.key)).toBe(0);
    // The proof still belongs to X.
    const inX = await confirmSignup({ pool: db.pool, accounts, proofs }, x, facts);
    expect(inX.ok && inX.proof.interactionUid).toBe(x);
  });

  it('makes exactly one account when two interactions confirm the same email at once', async () => {
    const email = newEmail('race');
    const a = newUid();
    const b = newUid();
    await decideAfterEmailProof({ accounts, proofs }, emailProof(a, email));
    await decideAfterEmailProof({ accounts, proofs }, emailProof(b, email));
    const [ra, rb] = await Promise.all([
      confirmSignup({ pool: db.pool, accounts, proofs }, a, facts),
      confirmSignup({ pool: db.pool, accounts, proofs }, b, facts),
    ]);
    if (!ra?.ok || !rb?.ok) throw new Error('both confirmations should sign in');
    expect(ra.account.id).toBe(rb.account.id);
    expect([ra.created, rb.created].sort()).toEqual([false, true]);
    expect(await emailRows(email.key)).toBe(1);
    const { rows } = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM accounts WHERE id IN (SELECT account_id FROM account_emails WHERE email_key = $1)', [email.key]);
    expect(Number(rows[0]?.n)).toBe(1);
  });

  it('does not confirm a signup after the confirmation window has passed', async () => {
    const email = newEmail('late');
    const uid = newUid();
    const provenAt = new Date();
    await decideAfterEmailProof({ accounts, proofs }, emailProof(uid, email, provenAt));
    const late = () => new Date(provenAt.getTime() + (SIGNUP_CONFIRMATION_TTL_SECONDS + 1) * 1000);
    expect(await confirmSignup({ pool: db.pool, accounts, proofs, now: late }, uid, facts)).toEqual({ ok: false, reason: 'no_pending_signup' });
    expect(await emailRows(email.key)).toBe(0);
  });

  it('does not confirm a signup the person cancelled', async () => {
    const email = newEmail('cancelled');
    const uid = newUid();
    await decideAfterEmailProof({ accounts, proofs }, emailProof(uid, email));
    await cancelSignup({ proofs }, uid);
    expect(await confirmSignup({ pool: db.pool, accounts, proofs }, uid, facts)).toEqual({ ok: false, reason: 'no_pending_signup' });
  });
});

describe('completeSignIn', () => {
  it('records the sign-in and answers with the account, amr, acr and proof time', async () => {
    const email = newEmail('signin');
    const account = await withTransaction(db.pool, (tx) => accounts.createAccountWithVerifiedEmail(tx, email));
    const at = new Date('2030-05-05T05:05:05.000Z');
    const result = await completeSignIn({ accounts }, account, emailProof(newUid(), email, at), facts);
    expect(result).toEqual({ login: { accountId: account.id, amr: ['otp'], acr: 'urn:tsunagi:loa:1', remember: true, ts: Math.floor(at.getTime() / 1000) } });
    const audit = await accounts.listAuditEvents({ accountId: account.id, type: 'sign_in' });
    expect(audit[0]?.data).toEqual({ method: 'email_otp', amr: ['otp'] });
  });
});
