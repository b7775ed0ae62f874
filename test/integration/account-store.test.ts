import type { PoolClient } from 'pg';
import { AccountStore, EmailAlreadyRegistered } from '../../src/accounts/account-store.js';
import { parseEmailAddress, type EmailAddress } from '../../src/accounts/email-address.js';
import { withTransaction, type Database } from '../../src/db/database.js';
import { openTestDatabase, uniqueEmail } from '../support/harness.js';

let db: Database;
let accounts: AccountStore;
beforeAll(async () => {
  db = await openTestDatabase();
  accounts = new AccountStore(db.pool);
});
afterAll(async () => { await db.close(); });

const parse = (raw: string) => parseEmailAddress(raw) as EmailAddress;
const create = (email: EmailAddress, name: string | null = null) => withTransaction(db.pool, (tx) => accounts.createAccountWithVerifiedEmail(tx, email, name));

describe('AccountStore', () => {
  it('treats emails that differ only in case as the same address', async () => {
    const lower = uniqueEmail('foo');
    const [local, domain] = lower.split('@') as [string, string];
    const first = await create(parse(lower));
    const shouted = `${local.charAt(0).toUpperCase()}${local.slice(1)}@${domain.toUpperCase()}`;
    await expect(create(parse(shouted))).rejects.toBeInstanceOf(EmailAlreadyRegistered);
    const { rows } = await db.pool.query<{ account_id: string }>('SELECT account_id FROM account_emails WHERE email_key = $1', [lower]);
    expect(rows).toEqual([{ account_id: first.id }]);
    expect((await accounts.findAccountByVerifiedEmail(parse(shouted)))?.id).toBe(first.id);
  });

  it('undoes a half-made account inside the transaction, which stays usable to look the owner up', async () => {
    const email = parse(uniqueEmail('half'));
    const owner = await create(email);
    const attemptedIds: string[] = [];
    const found = await withTransaction(db.pool, async (tx) => {
      // Watch the account id the store tries to insert, to check that it is gone again.
      const watched = {
        query: (text: string, params?: unknown[]) => {
          if (/INSERT INTO accounts/.test(text)) attemptedIds.push(String(params?.[0]));
          return tx.query(text, params);
        },
      } as unknown as PoolClient;
      await expect(accounts.createAccountWithVerifiedEmail(watched, email)).rejects.toBeInstanceOf(EmailAlreadyRegistered);
      const inside = await tx.query('SELECT id FROM accounts WHERE id = $1', [attemptedIds[0]]);
      expect(inside.rows).toHaveLength(0);
      return accounts.findAccountByVerifiedEmail(email, tx);
    });
    expect(attemptedIds).toHaveLength(1);
    expect(found?.id).toBe(owner.id);
    const { rows } = await db.pool.query('SELECT id FROM accounts WHERE id = $1', [attemptedIds[0]]);
    expect(rows).toHaveLength(0);
  });

  it('gives claims with the verified email, email_verified true and updated_at in seconds', async () => {
    const email = parse(uniqueEmail('claims'));
    const account = await create(email, 'Hanako');
    const claims = accounts.claimsOf(account);
    expect(claims).toEqual({
      sub: account.id,
      email: email.address,
      email_verified: true,
      name: 'Hanako',
      updated_at: Math.floor(account.updatedAt.getTime() / 1000),
    });
    expect(Number.isInteger(claims.updated_at)).toBe(true);
    expect(Math.abs(claims.updated_at - Date.now() / 1000)).toBeLessThan(120);
  });

  it('releases no email claim for an account without a verified email', () => {
    const claims = accounts.claimsOf({
      id: '00000000-0000-4000-8000-000000000000', name: null, createdAt: new Date(), updatedAt: new Date(0), disabledAt: null,
      emails: [{ address: 'x@example.test', key: 'x@example.test', isPrimary: true, verifiedAt: null }], phones: [],
    });
    expect(claims).toEqual({ sub: '00000000-0000-4000-8000-000000000000', updated_at: 0 });
  });

  it('finds an account by id and ignores ids that are not uuids', async () => {
    const account = await create(parse(uniqueEmail('byid')));
    expect((await accounts.findAccountById(account.id))?.emails[0]?.isPrimary).toBe(true);
    expect(await accounts.findAccountById('not-a-uuid')).toBeUndefined();
    expect(await accounts.findAccountById('00000000-0000-4000-8000-000000000000')).toBeUndefined();
  });

  it('records audit events and lists them newest first, filtered by account and type', async () => {
    const account = await create(parse(uniqueEmail('audit')));
    await accounts.recordAuditEvent({ type: 'sign_in', accountId: account.id, userAgent: 'u'.repeat(600), data: { n: 1 } });
    await accounts.recordAuditEvent({ type: 'sign_in', accountId: account.id, data: { n: 2 } });
    await accounts.recordAuditEvent({ type: 'signup', accountId: account.id });
    const events = await accounts.listAuditEvents({ accountId: account.id, type: 'sign_in' });
    expect(events.map((e) => e.data)).toEqual([{ n: 2 }, { n: 1 }]);
    expect(events[1]?.userAgent).toHaveLength(512);
  });
});
