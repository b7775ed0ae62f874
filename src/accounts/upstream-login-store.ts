import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { UpstreamProviderName } from './upstream-identity-store.js';

/**
 * Why Tsunagi sent the person upstream: 'login' (sign in or sign up), 'link_proof' (prove ownership
 * of `expectedAccountId` with its already linked identity `expectedSubject`), 'account_link' (link a
 * new identity to the signed-in account from the account page).
 */
export type UpstreamLoginPurpose = 'login' | 'link_proof' | 'account_link';

export interface PendingUpstreamLogin {
  /** The interaction uid, or 'account:<session uid>' for the account page. */
  interactionUid: string;
  provider: UpstreamProviderName;
  nonce: string;
  codeVerifier: string;
  redirectUri: string;
  purpose: UpstreamLoginPurpose;
  expectedAccountId: string | null;
  expectedSubject: string | null;
  createdAt: Date;
  expiresAt: Date;
}

export type ConsumeOutcome =
  | { ok: true; login: PendingUpstreamLogin }
  | { ok: false; why: 'unknown' | 'replayed' | 'expired' };

interface Row {
  interaction_uid: string; provider: UpstreamProviderName; nonce: string; code_verifier: string; redirect_uri: string;
  purpose: UpstreamLoginPurpose; expected_account_id: string | null; expected_subject: string | null; created_at: Date; expires_at: Date;
  consumed_at: Date | null;
}

const toLogin = (r: Row): PendingUpstreamLogin => ({
  interactionUid: r.interaction_uid, provider: r.provider, nonce: r.nonce, codeVerifier: r.code_verifier, redirectUri: r.redirect_uri,
  purpose: r.purpose, expectedAccountId: r.expected_account_id, expectedSubject: r.expected_subject, createdAt: r.created_at, expiresAt: r.expires_at,
});

/** Only a hash of the state is stored: a database reader cannot complete someone's sign-in. */
export function upstreamStateHash(state: string): string {
  return createHash('sha256').update(state).digest('base64url');
}

export class UpstreamLoginStore {
  constructor(private readonly pool: pg.Pool) {}

  async create(state: string, login: Omit<PendingUpstreamLogin, 'createdAt'>, now = new Date()): Promise<void> {
    await this.pool.query(
      `INSERT INTO upstream_logins (state_hash, interaction_uid, provider, nonce, code_verifier, redirect_uri, purpose,
                                    expected_account_id, expected_subject, created_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
      [upstreamStateHash(state), login.interactionUid, login.provider, login.nonce, login.codeVerifier, login.redirectUri, login.purpose,
        login.expectedAccountId, login.expectedSubject, now, login.expiresAt],
    );
  }

  /** Takes the pending login for this state, once: of two concurrent callbacks exactly one gets it. */
  async consume(state: string, now = new Date()): Promise<ConsumeOutcome> {
    const hash = upstreamStateHash(state);
    const { rows } = await this.pool.query<Row>(
      `UPDATE upstream_logins SET consumed_at = $2
       WHERE state_hash = $1 AND consumed_at IS NULL AND expires_at > $2
       RETURNING *`,
      [hash, now],
    );
    if (rows[0]) return { ok: true, login: toLogin(rows[0]) };
    // Only to say why on the error page; the answer is "no" either way.
    const seen = await this.pool.query<Row>('SELECT * FROM upstream_logins WHERE state_hash = $1', [hash]);
    const row = seen.rows[0];
    if (!row) return { ok: false, why: 'unknown' };
    return { ok: false, why: row.consumed_at ? 'replayed' : 'expired' };
  }

  async sweep(now = new Date()): Promise<number> {
    const r = await this.pool.query(`DELETE FROM upstream_logins WHERE expires_at < $1::timestamptz - interval '1 day'`, [now]);
    return r.rowCount ?? 0;
  }
}
