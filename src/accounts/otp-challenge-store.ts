import type pg from 'pg';

export type OtpChannel = 'email' | 'sms';

export interface OtpChallenge {
  id: string;
  channel: OtpChannel;
  purpose: string;
  target: string;
  interactionUid: string;
  accountId: string | null;
  codeHash: string;
  attempts: number;
  expiresAt: Date;
  consumedAt: Date | null;
}

interface Row {
  id: string; channel: OtpChannel; purpose: string; target: string; interaction_uid: string; account_id: string | null;
  code_hash: string; attempts: number; expires_at: Date; consumed_at: Date | null;
}
const toChallenge = (r: Row): OtpChallenge => ({
  id: r.id, channel: r.channel, purpose: r.purpose, target: r.target, interactionUid: r.interaction_uid,
  accountId: r.account_id, codeHash: r.code_hash, attempts: r.attempts, expiresAt: r.expires_at, consumedAt: r.consumed_at,
});

export class OtpChallengeStore {
  constructor(private readonly pool: pg.Pool) {}

  async create(c: Omit<OtpChallenge, 'attempts' | 'consumedAt'>): Promise<void> {
    await this.pool.query(
      `INSERT INTO otp_challenges (id, channel, purpose, target, interaction_uid, account_id, code_hash, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [c.id, c.channel, c.purpose, c.target, c.interactionUid, c.accountId, c.codeHash, c.expiresAt],
    );
  }

  async delete(id: string): Promise<void> {
    await this.pool.query('DELETE FROM otp_challenges WHERE id = $1', [id]);
  }

  /**
   * The challenge this interaction asked for last on this channel and purpose, unless it is used:
   * a newer code supersedes older ones for good, so an older code never comes back to life once the
   * newest was used.
   */
  async latestFor(interactionUid: string, channel: OtpChannel, purpose: string): Promise<OtpChallenge | undefined> {
    const { rows } = await this.pool.query<Row>(
      `SELECT * FROM otp_challenges WHERE interaction_uid = $1 AND channel = $2 AND purpose = $3
       ORDER BY created_at DESC LIMIT 1`,
      [interactionUid, channel, purpose],
    );
    return rows[0] && rows[0].consumed_at === null ? toChallenge(rows[0]) : undefined;
  }

  /** Where this interaction's newest code on this channel went, used or not (to fill the form in again). */
  async lastTargetFor(interactionUid: string, channel: OtpChannel, purpose: string): Promise<string | undefined> {
    const { rows } = await this.pool.query<{ target: string }>(
      `SELECT target FROM otp_challenges WHERE interaction_uid = $1 AND channel = $2 AND purpose = $3 ORDER BY created_at DESC LIMIT 1`,
      [interactionUid, channel, purpose],
    );
    return rows[0]?.target;
  }

  /**
   * Counts one try, atomically, before the code is compared: concurrent guesses can never make more
   * than the allowed number of comparisons. Returns the challenge as it is after counting, or
   * undefined when it is used up, consumed or expired.
   */
  async countAttempt(id: string, maxAttempts: number, now: Date): Promise<OtpChallenge | undefined> {
    const { rows } = await this.pool.query<Row>(
      `UPDATE otp_challenges SET attempts = attempts + 1
       WHERE id = $1 AND attempts < $2 AND consumed_at IS NULL AND expires_at > $3
       RETURNING *`,
      [id, maxAttempts, now],
    );
    return rows[0] ? toChallenge(rows[0]) : undefined;
  }

  /** Marks the challenge used; false when another request consumed it first. */
  async consume(id: string, now: Date): Promise<boolean> {
    const r = await this.pool.query('UPDATE otp_challenges SET consumed_at = $2 WHERE id = $1 AND consumed_at IS NULL', [id, now]);
    return r.rowCount === 1;
  }

  async sweep(now: Date): Promise<number> {
    const r = await this.pool.query(`DELETE FROM otp_challenges WHERE expires_at < $1::timestamptz - interval '1 day'`, [now]);
    return r.rowCount ?? 0;
  }
}
