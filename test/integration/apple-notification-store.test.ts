import { randomUUID } from 'node:crypto';
import { AppleNotificationStore, APPLE_NOTIFICATION_RETENTION_DAYS } from '../../src/accounts/apple-notification-store.js';
import { OtpChallengeStore } from '../../src/accounts/otp-challenge-store.js';
import { ProofStore } from '../../src/accounts/proof-store.js';
import { UpstreamLoginStore } from '../../src/accounts/upstream-login-store.js';
import type { Database } from '../../src/db/database.js';
import { describeBackends, openTestDatabase } from '../support/harness.js';

let db: Database;
let store: AppleNotificationStore;
beforeAll(async () => {
  db = await openTestDatabase();
  store = new AppleNotificationStore(db.pool);
});
afterAll(async () => { await db.close(); });

const DAY = 24 * 3600 * 1000;
const entry = () => ({ eventKey: randomUUID(), type: 'email-disabled', subject: `001.${randomUUID()}`, eventTime: new Date(), accountId: undefined, outcome: 'unknown_subject' });

describe(`AppleNotificationStore (${describeBackends()})`, () => {
  it('records an event once: a second delivery of the same key is refused', async () => {
    const n = entry();
    expect(await store.recordFirst(db.pool, n, new Date())).toBe(true);
    expect(await store.recordFirst(db.pool, { ...n, outcome: 'email_disabled' }, new Date())).toBe(false);
    expect(await store.find(n.eventKey)).toMatchObject({ outcome: 'unknown_subject', completedAt: undefined });
    await store.markCompleted(n.eventKey, new Date());
    expect((await store.find(n.eventKey))?.completedAt).toBeInstanceOf(Date);
  });

  it('sweeps only what is older than the retention period', async () => {
    const now = new Date();
    const [old, recent] = [entry(), entry()];
    await store.recordFirst(db.pool, old, new Date(now.getTime() - (APPLE_NOTIFICATION_RETENTION_DAYS + 1) * DAY));
    await store.recordFirst(db.pool, recent, new Date(now.getTime() - (APPLE_NOTIFICATION_RETENTION_DAYS - 1) * DAY));
    expect(await store.sweep(now)).toBeGreaterThanOrEqual(1);
    expect(await store.find(old.eventKey)).toBeUndefined();
    expect(await store.find(recent.eventKey)).toBeDefined();
  });

  // These ran with an untyped `$1 - interval` that Postgres refuses ("timestamp with time zone <
  // interval"): the server's periodic sweep failed at its second step and swept nothing but OIDC rows.
  it('the server sweeps of expired upstream logins, parked proofs and one-time codes run', async () => {
    const now = new Date();
    await expect(new UpstreamLoginStore(db.pool).sweep(now)).resolves.toEqual(expect.any(Number));
    await expect(new ProofStore(db.pool).sweep(now)).resolves.toEqual(expect.any(Number));
    await expect(new OtpChallengeStore(db.pool).sweep(now)).resolves.toEqual(expect.any(Number));
  });

  it('sweeps a parked proof a day after it expired, not before', async () => {
    const proofs = new ProofStore(db.pool);
    const at = new Date(Date.now() - 3 * DAY);
    const uid = `ix-${randomUUID()}`;
    await proofs.park('upstream_signup', { interactionUid: uid, method: 'upstream', amr: ['fed'], subject: { kind: 'account', accountId: randomUUID() }, at }, 60);
    await proofs.sweep(new Date(at.getTime() + 60_000 + DAY / 2));
    expect(await db.pool.query('SELECT 1 FROM interaction_proofs WHERE interaction_uid = $1', [uid])).toMatchObject({ rowCount: 1 });
    await proofs.sweep(new Date());
    expect(await db.pool.query('SELECT 1 FROM interaction_proofs WHERE interaction_uid = $1', [uid])).toMatchObject({ rowCount: 0 });
  });
});
