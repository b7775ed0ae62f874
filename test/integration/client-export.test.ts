import { randomBytes, randomUUID } from 'node:crypto';
import { AccountStore } from '../../src/accounts/account-store.js';
import { ClientExportStore } from '../../src/accounts/client-export-store.js';
import { parseEmailAddress, type EmailAddress } from '../../src/accounts/email-address.js';
import { withTransaction, type Database } from '../../src/db/database.js';
import { ClientExporter, InvalidCursor, exportAsCsv, exportAsJsonLines, keyedHash, normaliseLinkCode, type ExportRecord } from '../../src/flows/client-export.js';
import { openTestDatabase, uniqueEmail } from '../support/harness.js';

let db: Database;
let accounts: AccountStore;
let store: ClientExportStore;
beforeAll(async () => {
  db = await openTestDatabase();
  accounts = new AccountStore(db.pool);
  store = new ClientExportStore(db.pool);
});
afterAll(async () => { await db.close(); });

// Pairwise-like: each client sees its own sub.
const subjectFor = async (accountId: string, clientId: string) => `${clientId}:${accountId.slice(0, 8)}`;
const newExporter = (now = () => new Date()) => new ClientExporter({ store, secret: randomBytes(32).toString('base64url'), subjectFor, now });
const newAccount = async (email = uniqueEmail('export')) =>
  withTransaction(db.pool, (tx) => accounts.createAccountWithVerifiedEmail(tx, parseEmailAddress(email) as EmailAddress));
const accountsIn = (records: ExportRecord[]) => records.filter((r) => r.type === 'account');

describe('incremental export for one client (method 3)', () => {
  it('exports only accounts that shared with the client, with keyed hashes and the link code hash, then only what changed', async () => {
    const clientId = `shop-${randomUUID()}`;
    const exporter = newExporter();
    const email = uniqueEmail('Export');
    const sharing = await newAccount(email);
    await newAccount(); // never shares: never exported
    const first = await exporter.exportSince(clientId, undefined);
    expect(first.records).toEqual([]);

    const { code, expiresAt } = await exporter.issueLinkCode(clientId, sharing.id);
    expect(code).toMatch(/^\d{4}-\d{4}$/);
    const second = await exporter.exportSince(clientId, first.nextCursor);
    expect(second.records).toHaveLength(1);
    const record = second.records[0];
    if (record?.type !== 'account') throw new Error('expected an account record');
    expect(record.sub).toBe(await subjectFor(sharing.id, clientId));
    expect(record.email_hashes).toEqual([keyedHash(second.hashKey, 'email', email.toLowerCase())]);
    expect(JSON.stringify(record)).not.toContain(email.toLowerCase());
    expect(record.link_code_hash).toBe(keyedHash(second.hashKey, 'code', normaliseLinkCode(code) as string));
    expect(record.link_code_expires_at).toBe(expiresAt.toISOString());

    // Nothing changed: nothing new, same cursor.
    const idle = await exporter.exportSince(clientId, second.nextCursor);
    expect(idle.records).toEqual([]);
    expect(idle.nextCursor).toBe(second.nextCursor);

    // A phone added later appears as an update of the same sub.
    await withTransaction(db.pool, (tx) => accounts.addVerifiedPhone(tx, sharing.id, `+8190${String(Date.now()).slice(-8)}`));
    const third = await exporter.exportSince(clientId, second.nextCursor);
    expect(accountsIn(third.records).map((r) => r.type === 'account' && r.phone_hashes.length)).toEqual([1]);
  });

  it('rotates the link code: the new hash replaces the old one', async () => {
    const clientId = `shop-${randomUUID()}`;
    const exporter = newExporter();
    const account = await newAccount();
    const old = await exporter.issueLinkCode(clientId, account.id);
    const fresh = await exporter.issueLinkCode(clientId, account.id);
    const { records, hashKey } = await exporter.exportSince(clientId, undefined);
    expect(records).toHaveLength(1);
    const r = records[0];
    if (r?.type !== 'account') throw new Error('expected an account record');
    expect(r.link_code_hash).toBe(keyedHash(hashKey, 'code', normaliseLinkCode(fresh.code) as string));
    if (old.code !== fresh.code) expect(r.link_code_hash).not.toBe(keyedHash(hashKey, 'code', normaliseLinkCode(old.code) as string));
  });

  it('turns a person who stops sharing, and a deleted account, into tombstones', async () => {
    const clientId = `shop-${randomUUID()}`;
    const exporter = newExporter();
    const leaving = await newAccount();
    const deleted = await newAccount();
    await exporter.issueLinkCode(clientId, leaving.id);
    await exporter.issueLinkCode(clientId, deleted.id);
    const before = await exporter.exportSince(clientId, undefined);
    expect(accountsIn(before.records)).toHaveLength(2);
    expect(await store.leave(clientId, leaving.id)).toBe(true);
    await db.pool.query('DELETE FROM accounts WHERE id = $1', [deleted.id]);
    const after = await exporter.exportSince(clientId, before.nextCursor);
    expect(after.records.map((r) => [r.type, r.sub]).sort()).toEqual([
      ['tombstone', await subjectFor(deleted.id, clientId)], ['tombstone', await subjectFor(leaving.id, clientId)],
    ].sort());
  });

  it("keeps clients apart: another client's export is empty, and its cursor is refused", async () => {
    const shop = `shop-${randomUUID()}`;
    const other = `other-${randomUUID()}`;
    const exporter = newExporter();
    await exporter.issueLinkCode(shop, (await newAccount()).id);
    expect((await exporter.exportSince(other, undefined)).records).toEqual([]);
    const shopCursor = (await exporter.exportSince(shop, undefined)).nextCursor;
    await expect(exporter.exportSince(other, shopCursor)).rejects.toBeInstanceOf(InvalidCursor);
    expect(exporter.hashKeyFor(shop)).not.toBe(exporter.hashKeyFor(other));
  });

  it('refuses a tampered cursor', async () => {
    const clientId = `shop-${randomUUID()}`;
    const exporter = newExporter();
    await exporter.issueLinkCode(clientId, (await newAccount()).id);
    const { nextCursor } = await exporter.exportSince(clientId, undefined);
    const [v, seq, mac] = nextCursor.split('.');
    await expect(exporter.exportSince(clientId, `${v}.${Number(seq) - 1}.${mac}`)).rejects.toBeInstanceOf(InvalidCursor);
    await expect(exporter.exportSince(clientId, `${v}.0.${mac}`)).rejects.toBeInstanceOf(InvalidCursor);
    await expect(exporter.exportSince(clientId, 'garbage')).rejects.toBeInstanceOf(InvalidCursor);
    // A cursor signed by another deployment's secret is refused too.
    await expect(newExporter().exportSince(clientId, nextCursor)).rejects.toBeInstanceOf(InvalidCursor);
  });

  it('pages by the limit and resumes where it stopped', async () => {
    const clientId = `shop-${randomUUID()}`;
    const exporter = newExporter();
    for (let i = 0; i < 3; i++) await exporter.issueLinkCode(clientId, (await newAccount()).id);
    const page1 = await exporter.exportSince(clientId, undefined, 2);
    expect(page1.records).toHaveLength(2);
    expect(page1.more).toBe(true);
    const page2 = await exporter.exportSince(clientId, page1.nextCursor, 2);
    expect(page2.records).toHaveLength(1);
    expect(page2.more).toBe(false);
    expect(new Set([...page1.records, ...page2.records].map((r) => r.sub)).size).toBe(3);
  });

  it('writes JSON Lines with a header and a trailer, and CSV with one row per record', async () => {
    const clientId = `shop-${randomUUID()}`;
    const exporter = newExporter();
    await exporter.issueLinkCode(clientId, (await newAccount()).id);
    const result = await exporter.exportSince(clientId, undefined);
    const lines = exportAsJsonLines(result).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({ type: 'header', hash_key: result.hashKey });
    expect(lines[1]).toMatchObject({ type: 'account' });
    expect(lines[2]).toEqual({ type: 'end', next_cursor: result.nextCursor, more: false });
    const csv = exportAsCsv(result).trim().split('\r\n');
    expect(csv[0]).toBe('type,sub,email_hashes,phone_hashes,link_code_hash,link_code_expires_at,cursor');
    expect(csv[1]?.startsWith('account,')).toBe(true);
    expect(csv).toHaveLength(2);
  });

  it('normalises typed link codes', () => {
    expect(normaliseLinkCode('1234-5678')).toBe('12345678');
    expect(normaliseLinkCode(' 1234 5678 ')).toBe('12345678');
    expect(normaliseLinkCode('１２３４５６７８')).toBe('12345678');
    expect(normaliseLinkCode('1234-567')).toBeUndefined();
  });
});
