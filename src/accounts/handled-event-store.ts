import type pg from 'pg';
import type { Queryable } from '../db/database.js';

/** How long a handled event is remembered (far longer than an event may be old when it arrives). */
export const HANDLED_EVENT_RETENTION_DAYS = 30;

/** The tables of provider security events already handled (same columns; see migrations 004 and 011). */
export type HandledEventTable = 'apple_notifications' | 'google_risc_events';

export interface HandledEvent {
  /** What makes two deliveries the same event (Apple: a hash of type, sub, event_time; Google: the jti). */
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

const toHandled = (r: Row): HandledEvent => ({
  eventKey: r.event_key, type: r.type, subject: r.subject, eventTime: r.event_time ?? undefined,
  accountId: r.account_id ?? undefined, outcome: r.outcome, completedAt: r.completed_at ?? undefined,
});

/** Provider security events already handled: the database decides which delivery is the first. */
export class HandledEventStore {
  constructor(private readonly pool: pg.Pool, private readonly table: HandledEventTable) {}

  /**
   * Records the event inside the caller's transaction. false when it was recorded before (a retry, a
   * replay, or a concurrent delivery that won): the caller then changes nothing.
   */
  async recordFirst(tx: Queryable, n: Omit<HandledEvent, 'completedAt'>, now: Date): Promise<boolean> {
    const r = await tx.query(
      `INSERT INTO ${this.table} (event_key, type, subject, event_time, account_id, outcome, received_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_key) DO NOTHING`,
      [n.eventKey, n.type, n.subject, n.eventTime ?? null, n.accountId ?? null, n.outcome, now],
    );
    return r.rowCount === 1;
  }

  async find(eventKey: string, db: Queryable = this.pool): Promise<HandledEvent | undefined> {
    const { rows } = await db.query<Row>(`SELECT * FROM ${this.table} WHERE event_key = $1`, [eventKey]);
    return rows[0] ? toHandled(rows[0]) : undefined;
  }

  /**
   * Takes on the follow-up outside the transaction (ending sessions): true for exactly one caller,
   * so a redelivery arriving while the first delivery is still ending sessions does not do it (and
   * mail) twice. A follow-up that fails is released (`releaseFollowUp`) for a redelivery to finish.
   */
  async markCompleted(eventKey: string, now: Date): Promise<boolean> {
    const r = await this.pool.query(`UPDATE ${this.table} SET completed_at = $2 WHERE event_key = $1 AND completed_at IS NULL`, [eventKey, now]);
    return r.rowCount === 1;
  }

  async releaseFollowUp(eventKey: string): Promise<void> {
    await this.pool.query(`UPDATE ${this.table} SET completed_at = NULL WHERE event_key = $1`, [eventKey]);
  }

  async sweep(now: Date): Promise<number> {
    const r = await this.pool.query(
      `DELETE FROM ${this.table} WHERE received_at < $1::timestamptz - make_interval(days => $2::int)`, [now, HANDLED_EVENT_RETENTION_DAYS]);
    return r.rowCount ?? 0;
  }
}
