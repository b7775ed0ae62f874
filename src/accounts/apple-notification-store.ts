import type pg from 'pg';
import type { Queryable } from '../db/database.js';

/** How long a handled notification is remembered (far longer than a notification may be old when it arrives). */
export const APPLE_NOTIFICATION_RETENTION_DAYS = 30;

export interface HandledAppleNotification {
  eventKey: string;
  type: string;
  subject: string;
  eventTime: Date | undefined;
  accountId: string | undefined;
  outcome: string;
  completedAt: Date | undefined;
}

interface Row {
  event_key: string; type: string; subject: string; event_time: Date | null; account_id: string | null; outcome: string; completed_at: Date | null;
}

const toHandled = (r: Row): HandledAppleNotification => ({
  eventKey: r.event_key, type: r.type, subject: r.subject, eventTime: r.event_time ?? undefined,
  accountId: r.account_id ?? undefined, outcome: r.outcome, completedAt: r.completed_at ?? undefined,
});

/** Apple server-to-server notifications already handled: the database decides which delivery is the first. */
export class AppleNotificationStore {
  constructor(private readonly pool: pg.Pool) {}

  /**
   * Records the notification inside the caller's transaction. false when it was recorded before
   * (a retry, a replay, or a concurrent delivery that won): the caller then changes nothing.
   */
  async recordFirst(tx: Queryable, n: Omit<HandledAppleNotification, 'completedAt'>, now: Date): Promise<boolean> {
    const r = await tx.query(
      `INSERT INTO apple_notifications (event_key, type, subject, event_time, account_id, outcome, received_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_key) DO NOTHING`,
      [n.eventKey, n.type, n.subject, n.eventTime ?? null, n.accountId ?? null, n.outcome, now],
    );
    return r.rowCount === 1;
  }

  async find(eventKey: string, db: Queryable = this.pool): Promise<HandledAppleNotification | undefined> {
    const { rows } = await db.query<Row>('SELECT * FROM apple_notifications WHERE event_key = $1', [eventKey]);
    return rows[0] ? toHandled(rows[0]) : undefined;
  }

  /** The follow-up outside the transaction (ending sessions) is done too. */
  async markCompleted(eventKey: string, now: Date): Promise<void> {
    await this.pool.query('UPDATE apple_notifications SET completed_at = $2 WHERE event_key = $1 AND completed_at IS NULL', [eventKey, now]);
  }

  async sweep(now: Date): Promise<number> {
    const r = await this.pool.query(
      `DELETE FROM apple_notifications WHERE received_at < $1::timestamptz - make_interval(days => $2::int)`, [now, APPLE_NOTIFICATION_RETENTION_DAYS]);
    return r.rowCount ?? 0;
  }
}
