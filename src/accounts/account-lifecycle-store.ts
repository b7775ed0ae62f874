import type pg from 'pg';
import type { Queryable } from '../db/database.js';
import type { StoredAuditEvent } from './account-store.js';

/**
 * Keys of audit event data that name or locate the person (an address, a number, an upstream
 * subject, a display name). Deleting an account strips them from its events; what stays is what
 * happened, when, through which application, and the account's (now meaningless) id.
 */
export const PERSONAL_AUDIT_DATA_KEYS = ['email', 'phone', 'upstream', 'subject', 'name', 'email_key'] as const;

interface AuditRow {
  id: string; account_id: string | null; type: string; client_id: string | null; ip: string | null; user_agent: string | null;
  data: Record<string, unknown>; created_at: Date;
}

const toEvent = (r: AuditRow): StoredAuditEvent => ({
  id: String(r.id), accountId: r.account_id, type: r.type, clientId: r.client_id, ip: r.ip, userAgent: r.user_agent, data: r.data, createdAt: r.created_at,
});

/** The SQL of an account's lifecycle: disabling, deleting, the audit trail by period and its retention. */
export class AccountLifecycleStore {
  constructor(private readonly pool: pg.Pool) {}

  /** Disables (reason set) or enables (null) the account; false when nothing changed (unknown, or already so). */
  async setDisabled(tx: Queryable, accountId: string, disabled: { reason: string; at: Date } | null): Promise<boolean> {
    const r = disabled
      ? await tx.query('UPDATE accounts SET disabled_at = $2, disabled_reason = $3, updated_at = now() WHERE id = $1 AND disabled_at IS NULL', [accountId, disabled.at, disabled.reason])
      : await tx.query('UPDATE accounts SET disabled_at = NULL, disabled_reason = NULL, updated_at = now() WHERE id = $1 AND disabled_at IS NOT NULL', [accountId]);
    return r.rowCount === 1;
  }

  async disabledReason(accountId: string, db: Queryable = this.pool): Promise<string | null> {
    const { rows } = await db.query<{ disabled_reason: string | null }>('SELECT disabled_reason FROM accounts WHERE id = $1', [accountId]);
    return rows[0]?.disabled_reason ?? null;
  }

  /**
   * Removes the account and, through ON DELETE CASCADE, its emails, phones, passkeys, upstream
   * identities, pending codes and challenges, and export memberships; first strips the personal
   * details from its audit events (which keep its id, see migration 008). Inside the caller's transaction.
   */
  async deleteAccount(tx: pg.PoolClient, accountId: string): Promise<boolean> {
    await tx.query(
      `UPDATE audit_events SET data = data - $2::text[], ip = NULL, user_agent = NULL WHERE account_id = $1`,
      [accountId, [...PERSONAL_AUDIT_DATA_KEYS]],
    );
    const r = await tx.query('DELETE FROM accounts WHERE id = $1', [accountId]);
    return r.rowCount === 1;
  }

  /** A page of account ids in id order (for looking up a pairwise `sub`, which only hashing every id can match). */
  async accountIdsAfter(afterId: string | null, limit: number, db: Queryable = this.pool): Promise<string[]> {
    const { rows } = await db.query<{ id: string }>(
      'SELECT id FROM accounts WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2', [afterId, limit]);
    return rows.map((r) => r.id);
  }

  /** Audit events in [from, to), oldest first, optionally of one account. */
  async auditEventsBetween(period: { from: Date; to: Date; accountId?: string | undefined; limit?: number }, db: Queryable = this.pool): Promise<StoredAuditEvent[]> {
    const { rows } = await db.query<AuditRow>(
      `SELECT id, account_id, type, client_id, ip, user_agent, data, created_at FROM audit_events
       WHERE created_at >= $1 AND created_at < $2 AND ($3::uuid IS NULL OR account_id = $3)
       ORDER BY created_at, id LIMIT $4`,
      [period.from, period.to, period.accountId ?? null, period.limit ?? 100_000],
    );
    return rows.map(toEvent);
  }

  /** Every audit event of one account, oldest first (the person's data export). */
  async auditEventsOfAccount(accountId: string, db: Queryable = this.pool): Promise<StoredAuditEvent[]> {
    const { rows } = await db.query<AuditRow>(
      `SELECT id, account_id, type, client_id, ip, user_agent, data, created_at FROM audit_events
       WHERE account_id = $1 ORDER BY created_at, id`, [accountId]);
    return rows.map(toEvent);
  }

  /**
   * Deletes audit events older than `before`, in batches so a large backlog never holds one long
   * lock; returns how many went.
   */
  async sweepAuditEvents(before: Date, batch = 5000, db: Queryable = this.pool): Promise<number> {
    let total = 0;
    for (;;) {
      const r = await db.query(
        'DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE created_at < $1 ORDER BY id LIMIT $2)', [before, batch]);
      total += r.rowCount ?? 0;
      if ((r.rowCount ?? 0) < batch) return total;
    }
  }
}
