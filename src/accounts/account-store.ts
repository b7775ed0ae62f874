import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { isUniqueViolation, type Queryable } from '../db/database.js';
import type { EmailAddress } from './email-address.js';
import { AlreadyTaken } from './already-taken.js';

export interface AccountEmail { address: string; key: string; isPrimary: boolean; verifiedAt: Date | null }
export interface AccountPhone { phone: string; verifiedAt: Date | null }

export interface Account {
  id: string;
  name: string | null;
  createdAt: Date;
  updatedAt: Date;
  emails: AccountEmail[];
  phones: AccountPhone[];
  /** Set while an operator keeps the account from signing in (src/flows/account-lifecycle.ts). */
  disabledAt: Date | null;
}

/** The standard claims Tsunagi releases, keyed by OIDC claim name. */
export interface AccountClaims {
  sub: string;
  email?: string;
  email_verified?: boolean;
  phone_number?: string;
  phone_number_verified?: boolean;
  name?: string;
  updated_at: number;
}

export class EmailAlreadyRegistered extends AlreadyTaken {
  constructor(readonly email: string) { super('this email address already belongs to an account'); }
}

export class PhoneAlreadyRegistered extends AlreadyTaken {
  constructor(readonly phone: string) { super('this phone number already belongs to an account'); }
}

/**
 * Every kind of audit event Tsunagi records. The account page shows an account's events by their
 * message `event.<type>` (test/unit/message-keys.test.ts checks each has one in every language).
 */
export const AUDIT_EVENT_TYPES = [
  'sign_in', 'signup', 'consent_granted', 'email_added', 'email_removed', 'email_primary', 'phone_added', 'phone_removed',
  'passkey_added', 'passkey_removed', 'grant_revoked', 'upstream_linked', 'upstream_unlinked',
  'upstream_email_disabled', 'upstream_email_enabled', 'upstream_notification_ignored',
  'upstream_paused', 'upstream_resumed', 'upstream_sessions_ended', 'upstream_sign_in_refused',
  'client_added', 'client_removed', 'client_secret_rotated',
  // Account lifecycle (src/flows/account-lifecycle.ts): data.actor says who did it.
  'account_disabled', 'account_enabled', 'account_deleted', 'sessions_ended', 'account_viewed', 'data_exported', 'audit_exported',
  'sign_in_refused_disabled',
  // An Admin API call refused after its client was known (src/http/admin-api.ts); data says which and why.
  'admin_api_refused',
] as const;
export type AuditEventType = (typeof AUDIT_EVENT_TYPES)[number];

export function isAuditEventType(type: string): type is AuditEventType {
  return (AUDIT_EVENT_TYPES as readonly string[]).includes(type);
}

export interface AuditEvent {
  type: AuditEventType;
  accountId?: string | null;
  clientId?: string | null;
  ip?: string | null;
  userAgent?: string | null;
  data?: Record<string, unknown>;
}

/** A stored event's type is what was recorded then: a type this version no longer knows stays a plain string. */
export interface StoredAuditEvent extends Required<Omit<AuditEvent, 'data' | 'type'>> { id: string; type: string; data: Record<string, unknown>; createdAt: Date }

interface AccountRow {
  id: string; name: string | null; created_at: Date; updated_at: Date; disabled_at: Date | null;
  emails: Array<{ email: string; email_key: string; is_primary: boolean; verified_at: string | null }>;
  phones: Array<{ phone: string; verified_at: string | null }>;
}

// An account with its emails and phones in one round trip (this runs on every token refresh and
// userinfo request through findAccount).
const ACCOUNT_SELECT = `SELECT a.id, a.name, a.created_at, a.updated_at, a.disabled_at,
  COALESCE((SELECT json_agg(json_build_object('email', e.email, 'email_key', e.email_key, 'is_primary', e.is_primary, 'verified_at', e.verified_at)
                            ORDER BY e.is_primary DESC, e.created_at)
            FROM account_emails e WHERE e.account_id = a.id), '[]'::json) AS emails,
  COALESCE((SELECT json_agg(json_build_object('phone', p.phone, 'verified_at', p.verified_at) ORDER BY p.created_at)
            FROM account_phones p WHERE p.account_id = a.id), '[]'::json) AS phones
FROM accounts a`;

/**
 * One account as a JSON value (NULL when there is none), for a query that reads an account together
 * with what refers to it (src/oidc/adapter/related-prefetch.ts reads a token, its grant and its
 * account in one round trip). `idExpression` is SQL text yielding the account id as text; an id that
 * is not a UUID finds nothing, as findAccountById. Read the value with accountFromJson.
 */
export function accountJsonSql(idExpression: string): string {
  return `(SELECT json_build_object('id', a.id, 'name', a.name, 'created_at', a.created_at, 'updated_at', a.updated_at, 'disabled_at', a.disabled_at,
    'emails', COALESCE((SELECT json_agg(json_build_object('email', e.email, 'email_key', e.email_key, 'is_primary', e.is_primary, 'verified_at', e.verified_at)
                                 ORDER BY e.is_primary DESC, e.created_at)
                        FROM account_emails e WHERE e.account_id = a.id), '[]'::json),
    'phones', COALESCE((SELECT json_agg(json_build_object('phone', p.phone, 'verified_at', p.verified_at) ORDER BY p.created_at)
                        FROM account_phones p WHERE p.account_id = a.id), '[]'::json))
  FROM accounts a
  WHERE a.id = CASE WHEN (${idExpression}) ~* '${UUID_PATTERN}' THEN (${idExpression})::uuid END)`;
}

/** The account accountJsonSql read (its timestamps arrive as JSON strings). */
export function accountFromJson(json: unknown): Account | undefined {
  if (!json || typeof json !== 'object') return undefined;
  const row = json as Omit<AccountRow, 'created_at' | 'updated_at' | 'disabled_at'> & { created_at: string; updated_at: string; disabled_at: string | null };
  return toAccount({
    ...row, created_at: new Date(row.created_at), updated_at: new Date(row.updated_at), disabled_at: row.disabled_at ? new Date(row.disabled_at) : null,
  });
}

// All account SQL lives here. Methods that take `db` run on whatever they are given: the pool, or a
// transaction's client (never mix the two inside one transaction: the embedded pool has one connection).
export class AccountStore {
  constructor(private readonly pool: pg.Pool) {}

  async findAccountById(id: string, db: Queryable = this.pool): Promise<Account | undefined> {
    if (!isUuid(id)) return undefined;
    const { rows } = await db.query<AccountRow>(`${ACCOUNT_SELECT} WHERE a.id = $1`, [id]);
    const row = rows[0];
    return row ? toAccount(row) : undefined;
  }

  async findAccountByVerifiedEmail(email: EmailAddress, db: Queryable = this.pool): Promise<Account | undefined> {
    const { rows } = await db.query<AccountRow>(
      `${ACCOUNT_SELECT} WHERE a.id = (SELECT account_id FROM account_emails WHERE email_key = $1 AND verified_at IS NOT NULL)`,
      [email.key],
    );
    const row = rows[0];
    return row ? toAccount(row) : undefined;
  }

  /** Creates an account with no email (e.g. from an Apple sign-in with a relay address), inside the caller's transaction. */
  async createAccount(db: pg.PoolClient, name: string | null = null): Promise<Account> {
    const id = randomUUID();
    await db.query('INSERT INTO accounts (id, name) VALUES ($1, $2)', [id, name]);
    const account = await this.findAccountById(id, db);
    if (!account) throw new Error('account vanished inside its own transaction');
    return account;
  }

  /** Creates an account whose first (primary) email is already verified, inside the caller's transaction. Throws EmailAlreadyRegistered on a race. */
  async createAccountWithVerifiedEmail(db: pg.PoolClient, email: EmailAddress, name: string | null = null): Promise<Account> {
    const id = randomUUID();
    await db.query('SAVEPOINT create_account');
    try {
      await db.query('INSERT INTO accounts (id, name) VALUES ($1, $2)', [id, name]);
      await db.query(
        `INSERT INTO account_emails (id, account_id, email, email_key, is_primary, verified_at)
         VALUES ($1, $2, $3, $4, true, now())`,
        [randomUUID(), id, email.address, email.key],
      );
      await db.query('RELEASE SAVEPOINT create_account');
    } catch (err) {
      await db.query('ROLLBACK TO SAVEPOINT create_account');
      if (isUniqueViolation(err)) throw new EmailAlreadyRegistered(email.address);
      throw err;
    }
    const account = await this.findAccountById(id, db);
    if (!account) throw new Error('account vanished inside its own transaction');
    return account;
  }

  async findAccountByVerifiedPhone(phone: string, db: Queryable = this.pool): Promise<Account | undefined> {
    const { rows } = await db.query<AccountRow>(
      `${ACCOUNT_SELECT} WHERE a.id = (SELECT account_id FROM account_phones WHERE phone = $1 AND verified_at IS NOT NULL)`,
      [phone],
    );
    const row = rows[0];
    return row ? toAccount(row) : undefined;
  }

  /** Serialises changes to one account's sign-in methods (e.g. two removals racing for the last one). */
  async lockAccount(tx: pg.PoolClient, accountId: string): Promise<boolean> {
    const r = await tx.query('SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE', [accountId]);
    return r.rowCount === 1;
  }

  /**
   * Every way this account can sign in now: verified emails and phones, passkeys, linked Google/Apple
   * identities that are not paused (src/flows/google-risc.ts): the last of these cannot be removed.
   */
  async countSignInMethods(accountId: string, db: Queryable = this.pool): Promise<number> {
    const { rows } = await db.query<{ n: number }>(
      `SELECT (SELECT count(*) FROM account_emails WHERE account_id = $1 AND verified_at IS NOT NULL)
            + (SELECT count(*) FROM account_phones WHERE account_id = $1 AND verified_at IS NOT NULL)
            + (SELECT count(*) FROM webauthn_credentials WHERE account_id = $1)
            + (SELECT count(*) FROM upstream_identities WHERE account_id = $1 AND sign_in_paused_at IS NULL) AS n`,
      [accountId],
    );
    return Number(rows[0]?.n ?? 0);
  }

  /** Adds an address the person just proved; EmailAlreadyRegistered when it is already someone's. */
  async addVerifiedEmail(tx: pg.PoolClient, accountId: string, email: EmailAddress): Promise<void> {
    await tx.query('SAVEPOINT add_email');
    try {
      await tx.query(
        `INSERT INTO account_emails (id, account_id, email, email_key, is_primary, verified_at)
         VALUES ($1, $2, $3, $4, NOT EXISTS (SELECT 1 FROM account_emails WHERE account_id = $2 AND is_primary), now())`,
        [randomUUID(), accountId, email.address, email.key],
      );
      await tx.query('RELEASE SAVEPOINT add_email');
    } catch (err) {
      await tx.query('ROLLBACK TO SAVEPOINT add_email');
      if (isUniqueViolation(err)) throw new EmailAlreadyRegistered(email.address);
      throw err;
    }
    await this.touch(tx, accountId);
  }

  async setPrimaryEmail(tx: pg.PoolClient, accountId: string, emailKey: string): Promise<boolean> {
    const target = await tx.query('SELECT 1 FROM account_emails WHERE account_id = $1 AND email_key = $2 AND verified_at IS NOT NULL', [accountId, emailKey]);
    if (!target.rowCount) return false;
    await tx.query('UPDATE account_emails SET is_primary = false WHERE account_id = $1 AND is_primary', [accountId]);
    await tx.query('UPDATE account_emails SET is_primary = true WHERE account_id = $1 AND email_key = $2', [accountId, emailKey]);
    await this.touch(tx, accountId);
    return true;
  }

  /** Removes an address; if it was primary, the oldest remaining verified one becomes primary. */
  async removeEmail(tx: pg.PoolClient, accountId: string, emailKey: string): Promise<boolean> {
    const r = await tx.query<{ is_primary: boolean }>('DELETE FROM account_emails WHERE account_id = $1 AND email_key = $2 RETURNING is_primary', [accountId, emailKey]);
    if (!r.rowCount) return false;
    if (r.rows[0]?.is_primary) {
      await tx.query(
        `UPDATE account_emails SET is_primary = true WHERE id = (
           SELECT id FROM account_emails WHERE account_id = $1 AND verified_at IS NOT NULL ORDER BY created_at LIMIT 1)`,
        [accountId]);
    }
    await this.touch(tx, accountId);
    return true;
  }

  /** Adds a number the person just proved; PhoneAlreadyRegistered when it is already someone's. */
  async addVerifiedPhone(tx: pg.PoolClient, accountId: string, phone: string): Promise<void> {
    await tx.query('SAVEPOINT add_phone');
    try {
      await tx.query('INSERT INTO account_phones (id, account_id, phone, verified_at) VALUES ($1, $2, $3, now())', [randomUUID(), accountId, phone]);
      await tx.query('RELEASE SAVEPOINT add_phone');
    } catch (err) {
      await tx.query('ROLLBACK TO SAVEPOINT add_phone');
      if (isUniqueViolation(err)) throw new PhoneAlreadyRegistered(phone);
      throw err;
    }
    await this.touch(tx, accountId);
  }

  async removePhone(tx: pg.PoolClient, accountId: string, phone: string): Promise<boolean> {
    const r = await tx.query('DELETE FROM account_phones WHERE account_id = $1 AND phone = $2', [accountId, phone]);
    if (r.rowCount) await this.touch(tx, accountId);
    return Boolean(r.rowCount);
  }

  private async touch(db: Queryable, accountId: string): Promise<void> {
    await db.query('UPDATE accounts SET updated_at = now() WHERE id = $1', [accountId]);
  }

  async countAccounts(db: Queryable = this.pool): Promise<number> {
    const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM accounts');
    return Number(rows[0]?.n ?? 0);
  }

  claimsOf(account: Account): AccountClaims {
    const email = account.emails.find((e) => e.isPrimary && e.verifiedAt) ?? account.emails.find((e) => e.verifiedAt);
    const phone = account.phones.find((p) => p.verifiedAt);
    const claims: AccountClaims = { sub: account.id, updated_at: Math.floor(account.updatedAt.getTime() / 1000) };
    if (email) { claims.email = email.address; claims.email_verified = true; }
    if (phone) { claims.phone_number = phone.phone; claims.phone_number_verified = true; }
    if (account.name) claims.name = account.name;
    return claims;
  }

  async recordAuditEvent(event: AuditEvent, db: Queryable = this.pool): Promise<void> {
    await db.query(
      `INSERT INTO audit_events (account_id, type, client_id, ip, user_agent, data) VALUES ($1, $2, $3, $4, $5, $6)`,
      [event.accountId ?? null, event.type, event.clientId ?? null, event.ip ?? null, truncate(event.userAgent, 512), event.data ?? {}],
    );
  }

  /**
   * The loginTs (epoch seconds) of the account's sign-ins that went through this upstream identity
   * since `since` (the oldest a live session can be): a session whose loginTs is one of them began
   * with that identity (src/flows/login.ts records them on every sign-in).
   */
  async upstreamSignInTimes(accountId: string, identity: { issuer: string; subject: string }, since: Date, db: Queryable = this.pool): Promise<number[]> {
    const { rows } = await db.query<{ login_ts: string }>(
      `SELECT DISTINCT data->>'loginTs' AS login_ts FROM audit_events
       WHERE account_id = $1 AND type = 'sign_in' AND created_at >= $2
         AND data @> jsonb_build_object('upstream', jsonb_build_array(jsonb_build_object('issuer', $3::text, 'subject', $4::text)))`,
      [accountId, since, identity.issuer, identity.subject],
    );
    return rows.map((r) => Number(r.login_ts)).filter((n) => Number.isInteger(n));
  }

  async listAuditEvents(filter: { accountId?: string; type?: string; limit?: number }, db: Queryable = this.pool): Promise<StoredAuditEvent[]> {
    const { rows } = await db.query<{ id: string; account_id: string | null; type: string; client_id: string | null; ip: string | null; user_agent: string | null; data: Record<string, unknown>; created_at: Date }>(
      `SELECT id, account_id, type, client_id, ip, user_agent, data, created_at FROM audit_events
       WHERE ($1::uuid IS NULL OR account_id = $1) AND ($2::text IS NULL OR type = $2)
       ORDER BY id DESC LIMIT $3`,
      [filter.accountId ?? null, filter.type ?? null, filter.limit ?? 50],
    );
    return rows.map((r) => ({ id: String(r.id), accountId: r.account_id, type: r.type, clientId: r.client_id, ip: r.ip, userAgent: r.user_agent, data: r.data, createdAt: r.created_at }));
  }


}

function truncate(s: string | null | undefined, n: number): string | null {
  if (s === undefined || s === null) return null;
  return s.length > n ? s.slice(0, n) : s;
}

// The one spelling of an account id, checked in JS (isUuid) and in SQL (accountJsonSql) alike.
const UUID_PATTERN = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
const UUID_RE = new RegExp(UUID_PATTERN, 'i');
export function isUuid(s: string): boolean { return UUID_RE.test(s); }

function toAccount(row: AccountRow): Account {
  return {
    id: row.id,
    name: row.name,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    disabledAt: row.disabled_at,
    emails: row.emails.map((e) => ({ address: e.email, key: e.email_key, isPrimary: e.is_primary, verifiedAt: e.verified_at ? new Date(e.verified_at) : null })),
    phones: row.phones.map((p) => ({ phone: p.phone, verifiedAt: p.verified_at ? new Date(p.verified_at) : null })),
  };
}
