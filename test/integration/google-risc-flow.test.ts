import { developmentMasterKeyring } from '../../src/secrets/master-key.js';
import { randomUUID } from 'node:crypto';
import { AccountStore } from '../../src/accounts/account-store.js';
import { parseEmailAddress, type EmailAddress } from '../../src/accounts/email-address.js';
import { HandledEventStore } from '../../src/accounts/handled-event-store.js';
import { UpstreamIdentityStore } from '../../src/accounts/upstream-identity-store.js';
import { withTransaction, type Database } from '../../src/db/database.js';
import { handleGoogleSecurityEvent, sessionsBegunWith, type GoogleRiscDeps } from '../../src/flows/google-risc.js';
import type { GoogleRiscEventType, GoogleSecurityEvent } from '../../src/upstream/index.js';
import { describeBackends, openTestDatabase, uniqueEmail } from '../support/harness.js';

const GOOGLE = 'https://accounts.google.test';

let db: Database;
let accounts: AccountStore;
let identities: UpstreamIdentityStore;
let handled: HandledEventStore;
beforeAll(async () => {
  db = await openTestDatabase();
  accounts = new AccountStore(db.pool);
  identities = await UpstreamIdentityStore.open(db.pool, developmentMasterKeyring());
  handled = new HandledEventStore(db.pool, 'google_risc_events');
});
afterAll(async () => { await db.close(); });

/** An account with a verified email and a linked Google identity. */
async function googleAccount() {
  const account = await withTransaction(db.pool, (tx) => accounts.createAccountWithVerifiedEmail(tx, parseEmailAddress(uniqueEmail('risc')) as EmailAddress));
  const identity = await identities.link(undefined, account.id, {
    provider: 'google', issuer: GOOGLE, subject: randomUUID(), email: null, emailVerified: false, isPrivateEmail: false,
  });
  return { accountId: account.id, identity };
}

const event = (type: GoogleRiscEventType, subject: string, extra: Partial<GoogleSecurityEvent> = {}): GoogleSecurityEvent => ({
  type, uri: `https://schemas.openid.net/secevent/risc/event-type/${type}`, jti: randomUUID(), issuedAt: new Date(),
  subject: { issuer: GOOGLE, subject }, reason: undefined, state: undefined, ...extra,
});

/** Deps whose session ending and mail are recorded, and can be made to fail. */
function depsRecording() {
  const ended: Array<{ accountId: string; subject: string; withGrants: boolean; before: Date | undefined }> = [];
  const mailed: string[] = [];
  const failures = { endSessions: 0 };
  const deps: GoogleRiscDeps = {
    pool: db.pool, accounts, identities, handled, googleIssuer: GOOGLE,
    endSessions: async (accountId, identity, opts) => {
      if (failures.endSessions > 0) {
        failures.endSessions -= 1;
        throw new Error('the session store is down');
      }
      ended.push({ accountId, subject: identity.subject, withGrants: opts.withGrants, before: opts.before });
    },
    notifyPaused: async (accountId) => { mailed.push(accountId); },
  };
  return { deps, ended, mailed, failures };
}

describe(`Google RISC events, decided without HTTP (${describeBackends()})`, () => {
  it('applies a hijacking report once when two deliveries of the same SET race', async () => {
    const { accountId, identity } = await googleAccount();
    const { deps, ended, mailed } = depsRecording();
    const hijack = event('account-disabled', identity.subject, { reason: 'hijacking' });
    const outcomes = await Promise.all([handleGoogleSecurityEvent(deps, hijack), handleGoogleSecurityEvent(deps, hijack)]);
    expect(outcomes.map((o) => o.outcome).sort()).toEqual(['duplicate', 'paused_hijacking']);
    expect(ended).toEqual([{ accountId, subject: identity.subject, withGrants: true, before: undefined }]);
    expect(mailed).toEqual([accountId]);
    expect(await accounts.listAuditEvents({ accountId, type: 'upstream_paused' })).toHaveLength(1);
  });

  it('finishes the session ending on a redelivery when it failed after the commit, and only then', async () => {
    const { accountId, identity } = await googleAccount();
    const { deps, ended, failures } = depsRecording();
    const revoked = event('sessions-revoked', identity.subject);
    failures.endSessions = 1;
    await expect(handleGoogleSecurityEvent(deps, revoked)).rejects.toThrow('the session store is down');
    expect(await handled.find(revoked.jti)).toMatchObject({ outcome: 'sessions_ended', completedAt: undefined });
    expect(await handleGoogleSecurityEvent(deps, revoked)).toEqual({ outcome: 'duplicate' });
    expect(ended).toEqual([{ accountId, subject: identity.subject, withGrants: false, before: revoked.issuedAt }]);
    expect((await handled.find(revoked.jti))?.completedAt).toBeInstanceOf(Date);
    expect(await handleGoogleSecurityEvent(deps, revoked)).toEqual({ outcome: 'duplicate' });
    expect(ended).toHaveLength(1);
    expect(await accounts.listAuditEvents({ accountId, type: 'upstream_sessions_ended' })).toHaveLength(1);
  });

  it('keeps a hijacking pause when a milder disable follows; account-enabled does not lift it, the person does', async () => {
    const { deps } = depsRecording();
    // The last way in (no email): a plain disable pauses rather than unlinks.
    const lone = await withTransaction(db.pool, (tx) => accounts.createAccount(tx, null));
    const identity = await identities.link(undefined, lone.id, { provider: 'google', issuer: GOOGLE, subject: randomUUID(), email: null, emailVerified: false, isPrivateEmail: false });
    expect((await handleGoogleSecurityEvent(deps, event('account-disabled', identity.subject, { reason: 'bulk-account' }))).outcome).toBe('paused_disabled');
    expect((await identities.findByIssuerSubject(GOOGLE, identity.subject))?.signInPaused?.reason).toBe('bulk-account');
    expect((await handleGoogleSecurityEvent(deps, event('account-disabled', identity.subject, { reason: 'hijacking' }))).outcome).toBe('paused_hijacking');
    expect((await handleGoogleSecurityEvent(deps, event('account-disabled', identity.subject))).outcome).toBe('already_paused');
    expect((await identities.findByIssuerSubject(GOOGLE, identity.subject))?.signInPaused?.reason).toBe('hijacking');
    expect((await handleGoogleSecurityEvent(deps, event('account-enabled', identity.subject))).outcome).toBe('nothing_to_resume');
    expect(await identities.resumeSignIn(lone.id, identity.id, 'hijacking')).toBe(true);
    expect((await identities.findByIssuerSubject(GOOGLE, identity.subject))?.signInPaused).toBeUndefined();
  });

  it('never lifts a pause of another account\'s identity', async () => {
    const { identity } = await googleAccount();
    const other = await googleAccount();
    await identities.pauseSignIn(identity.id, 'hijacking', new Date());
    expect(await identities.resumeSignIn(other.accountId, identity.id, 'hijacking')).toBe(false);
    expect((await identities.findByIssuerSubject(GOOGLE, identity.subject))?.signInPaused?.reason).toBe('hijacking');
  });

  it('ignores a subject under another issuer, recording it as unknown', async () => {
    const { accountId, identity } = await googleAccount();
    const { deps, ended } = depsRecording();
    const elsewhere = event('account-purged', identity.subject, { subject: { issuer: 'https://other.issuer.test', subject: identity.subject } });
    expect(await handleGoogleSecurityEvent(deps, elsewhere)).toEqual({ outcome: 'unknown_subject' });
    expect((await identities.findByIssuerSubject(GOOGLE, identity.subject))?.accountId).toBe(accountId);
    expect(ended).toEqual([]);
  });
});

describe('sessionsBegunWith', () => {
  const at = (seconds: number) => new Date(seconds * 1000);
  it('picks federated sessions whose latest sign-in went through the identity, up to the event', () => {
    const begun = sessionsBegunWith([100, 200], at(150));
    expect(begun({ loginTs: 100, amr: ['fed'] })).toBe(true);
    expect(begun({ loginTs: 200, amr: ['fed'] })).toBe(false); // after the event
    expect(begun({ loginTs: 120, amr: ['fed'] })).toBe(false); // another identity's sign-in
    expect(begun({ loginTs: 100, amr: ['otp'] })).toBe(false); // signed in again by code in that second
    expect(begun({ amr: ['fed'] })).toBe(false);
    expect(sessionsBegunWith([200], undefined)({ loginTs: 200, amr: ['fed', 'otp'] })).toBe(true);
  });
});
