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

/**
 * Why a state was not handed out: 'other_browser' is a live pending login whose browser binding the
 * request does not carry (the answer came back in a browser that did not begin it); it stays usable
 * by the browser that did, and `purpose` says where that browser would start again.
 */
export type RefusedState =
  | { ok: false; why: 'unknown' | 'replayed' | 'expired' }
  | { ok: false; why: 'other_browser'; purpose: UpstreamLoginPurpose };

export type ConsumeOutcome = { ok: true; login: PendingUpstreamLogin } | RefusedState;

/** The parameters of an answer that came as a form POST, as held until its same-site GET takes them. */
export type HeldAnswerParams = Record<string, string>;

interface Row {
  interaction_uid: string; provider: UpstreamProviderName; nonce: string; code_verifier: string; redirect_uri: string;
  purpose: UpstreamLoginPurpose; expected_account_id: string | null; expected_subject: string | null; created_at: Date; expires_at: Date;
  consumed_at: Date | null; browser_binding_hash: string;
}

const toLogin = (r: Row): PendingUpstreamLogin => ({
  interactionUid: r.interaction_uid, provider: r.provider, nonce: r.nonce, codeVerifier: r.code_verifier, redirectUri: r.redirect_uri,
  purpose: r.purpose, expectedAccountId: r.expected_account_id, expectedSubject: r.expected_subject, createdAt: r.created_at, expiresAt: r.expires_at,
});

/** Only a hash of the state is stored: a database reader cannot complete someone's sign-in. */
export function upstreamStateHash(state: string): string {
  return createHash('sha256').update(state).digest('base64url');
}

/** The browser binding (the cookie value) and a held answer's reference are stored as hashes too. */
const secretHash = (value: string) => createHash('sha256').update(value).digest('base64url');

export class UpstreamLoginStore {
  constructor(private readonly pool: pg.Pool) {}

  /** Stores a pending login for `state`, bound to the browser that holds `browserBinding`. */
  async create(state: string, browserBinding: string, login: Omit<PendingUpstreamLogin, 'createdAt'>, now = new Date()): Promise<void> {
    await this.pool.query(
      `INSERT INTO upstream_logins (state_hash, interaction_uid, provider, nonce, code_verifier, redirect_uri, purpose,
                                    expected_account_id, expected_subject, created_at, expires_at, browser_binding_hash)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
      [upstreamStateHash(state), login.interactionUid, login.provider, login.nonce, login.codeVerifier, login.redirectUri, login.purpose,
        login.expectedAccountId, login.expectedSubject, now, login.expiresAt, secretHash(browserBinding)],
    );
  }

  /**
   * Takes the pending login for this state, once, and only for the browser that began it (the
   * binding is part of the same UPDATE, so a callback from another browser consumes nothing): of two
   * concurrent callbacks exactly one gets it.
   */
  async consume(state: string, browserBinding: string | undefined, now = new Date()): Promise<ConsumeOutcome> {
    const hash = upstreamStateHash(state);
    if (browserBinding) {
      const { rows } = await this.pool.query<Row>(
        `UPDATE upstream_logins SET consumed_at = $2
         WHERE state_hash = $1 AND browser_binding_hash = $3 AND consumed_at IS NULL AND expires_at > $2
         RETURNING *`,
        [hash, now, secretHash(browserBinding)],
      );
      if (rows[0]) return { ok: true, login: toLogin(rows[0]) };
    }
    return this.whyRefused(hash, now);
  }

  /**
   * Holds an answer that arrived as a cross-site form POST (no SameSite=Lax cookie on it) under
   * `reference`, for a live pending login of `provider` only. It decides and consumes nothing.
   */
  async holdAnswer(
    provider: UpstreamProviderName, state: string, params: HeldAnswerParams, reference: string, expiresAt: Date, now = new Date(),
  ): Promise<{ ok: true } | RefusedState> {
    const hash = upstreamStateHash(state);
    const held = await this.pool.query(
      `INSERT INTO upstream_answers (reference_hash, state_hash, provider, params, expires_at)
       SELECT $1, state_hash, provider, $3::jsonb, $4 FROM upstream_logins
       WHERE state_hash = $2 AND provider = $5 AND consumed_at IS NULL AND expires_at > $6`,
      [secretHash(reference), hash, JSON.stringify(params), expiresAt, provider, now],
    );
    if (held.rowCount) return { ok: true };
    const why = await this.whyRefused(hash, now);
    // A live login of the other provider: for this endpoint it is as unknown as a forged state.
    return why.why === 'other_browser' ? { ok: false, why: 'unknown' } : why;
  }

  /** Takes a held answer once (whoever presents the reference; the binding is checked by consume()). */
  async takeAnswer(provider: UpstreamProviderName, reference: string, now = new Date()): Promise<HeldAnswerParams | undefined> {
    const { rows } = await this.pool.query<{ params: HeldAnswerParams; expires_at: Date }>(
      'DELETE FROM upstream_answers WHERE reference_hash = $1 AND provider = $2 RETURNING params, expires_at',
      [secretHash(reference), provider],
    );
    const row = rows[0];
    return row && row.expires_at > now ? row.params : undefined;
  }

  // Only to say why on the error page; the answer is "no" either way.
  private async whyRefused(hash: string, now: Date): Promise<RefusedState> {
    const seen = await this.pool.query<Row>('SELECT * FROM upstream_logins WHERE state_hash = $1', [hash]);
    const row = seen.rows[0];
    if (!row) return { ok: false, why: 'unknown' };
    if (row.consumed_at) return { ok: false, why: 'replayed' };
    if (row.expires_at <= now) return { ok: false, why: 'expired' };
    return { ok: false, why: 'other_browser', purpose: row.purpose };
  }

  async sweep(now = new Date()): Promise<number> {
    const answers = await this.pool.query('DELETE FROM upstream_answers WHERE expires_at < $1', [now]);
    const r = await this.pool.query(`DELETE FROM upstream_logins WHERE expires_at < $1::timestamptz - interval '1 day'`, [now]);
    return (answers.rowCount ?? 0) + (r.rowCount ?? 0);
  }
}
