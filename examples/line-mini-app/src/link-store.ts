import { createHash } from 'node:crypto';
import type { Sql } from './database.js';

// Tables are prefixed so the example can share a database with other things without clashes.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS line_mini_app_links (
  line_user_id text PRIMARY KEY,
  tsunagi_sub  text NOT NULL UNIQUE,
  linked_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS line_mini_app_nonces (
  nonce_hash   text PRIMARY KEY,
  line_user_id text NOT NULL,
  expires_at   timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS line_mini_app_ciba_requests (
  request_id_hash  text PRIMARY KEY,
  auth_req_id      text NOT NULL,
  line_user_id     text NOT NULL,
  binding_message  text NOT NULL,
  interval_seconds integer NOT NULL,
  next_poll_at     timestamptz NOT NULL,
  expires_at       timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS line_mini_app_export_accounts (
  sub                   text PRIMARY KEY,
  email_hashes          text[] NOT NULL,
  phone_hashes          text[] NOT NULL,
  link_code_hash        text,
  link_code_expires_at  timestamptz
);
CREATE TABLE IF NOT EXISTS line_mini_app_export_state (
  client_id  text PRIMARY KEY,
  cursor     text NOT NULL,
  hash_key   text NOT NULL
);
CREATE TABLE IF NOT EXISTS line_mini_app_code_attempts (
  line_user_id  text NOT NULL,
  window_start  timestamptz NOT NULL,
  attempts      integer NOT NULL,
  PRIMARY KEY (line_user_id, window_start)
);
CREATE TABLE IF NOT EXISTS line_mini_app_used_tokens (
  jti        text PRIMARY KEY,
  expires_at timestamptz NOT NULL
);
`;

export type LinkResult = 'linked' | 'already_linked';

/** One line of Tsunagi's export (method 3), parsed. */
export type ExportEntry =
  | { type: 'account'; sub: string; emailHashes: string[]; phoneHashes: string[]; linkCodeHash: string | null; linkCodeExpiresAt: Date | null }
  | { type: 'tombstone'; sub: string };

export type LinkRefusal = 'unknown_ciba_request' | 'unknown_nonce' | 'nonce_of_other_line_user' | 'token_replayed' | 'line_user_linked_elsewhere' | 'account_linked_elsewhere';

/** Thrown inside the linking transaction, so everything it did is rolled back. */
export class LinkRefused extends Error {
  constructor(readonly reason: LinkRefusal) {
    super(reason);
    this.name = 'LinkRefused';
  }
}

// Only a hash of the nonce is stored: a leaked table row cannot be replayed.
const hashOf = (nonce: string) => createHash('sha256').update(nonce).digest('base64url');

/** All SQL of the example: the links, the single-use nonces and the access tokens already used. */
export class LinkStore {
  constructor(private readonly sql: Sql) {}

  async createSchema(): Promise<void> {
    // Several processes may start at once against one database: one of them creates the tables.
    await this.sql.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(hashtext('line_mini_app_schema'))`);
      for (const statement of SCHEMA.split(';').map((s) => s.trim()).filter(Boolean)) await tx.query(statement);
    });
  }

  async saveNonce(nonce: string, lineUserId: string, ttlSeconds: number): Promise<void> {
    await this.sql.query('DELETE FROM line_mini_app_nonces WHERE expires_at < now()');
    await this.sql.query(
      `INSERT INTO line_mini_app_nonces (nonce_hash, line_user_id, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))`,
      [hashOf(nonce), lineUserId, ttlSeconds]);
  }

  /**
   * Links inside one transaction: the nonce is consumed, the access token (if any) marked used and
   * the link stored together, or nothing changes when any step refuses (LinkRefused).
   */
  async link(input: { nonce: string; lineUserId: string; sub: string; usedToken?: { jti: string; expiresAt: Date } }): Promise<LinkResult> {
    return this.sql.transaction(async (tx) => {
      const consumed = await tx.query(
        'DELETE FROM line_mini_app_nonces WHERE nonce_hash = $1 AND line_user_id = $2 AND expires_at > now() RETURNING 1',
        [hashOf(input.nonce), input.lineUserId]);
      if (consumed.length === 0) {
        const other = await tx.query('SELECT 1 FROM line_mini_app_nonces WHERE nonce_hash = $1 AND expires_at > now()', [hashOf(input.nonce)]);
        throw new LinkRefused(other.length ? 'nonce_of_other_line_user' : 'unknown_nonce');
      }
      if (input.usedToken) {
        await tx.query('DELETE FROM line_mini_app_used_tokens WHERE expires_at < now()');
        const fresh = await tx.query('INSERT INTO line_mini_app_used_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1',
          [input.usedToken.jti, input.usedToken.expiresAt]);
        if (fresh.length === 0) throw new LinkRefused('token_replayed');
      }
      return insertLink(tx, input.lineUserId, input.sub);
    });
  }

  /** Method 2: a pending CIBA request of this LINE user, by the id the mini-app holds. */
  async saveCibaRequest(input: { requestId: string; authReqId: string; lineUserId: string; bindingMessage: string; intervalSeconds: number; expiresInSeconds: number }): Promise<void> {
    await this.sql.query('DELETE FROM line_mini_app_ciba_requests WHERE expires_at < now()');
    await this.sql.query(
      `INSERT INTO line_mini_app_ciba_requests (request_id_hash, auth_req_id, line_user_id, binding_message, interval_seconds, next_poll_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, now(), now() + make_interval(secs => $6))`,
      [hashOf(input.requestId), input.authReqId, input.lineUserId, input.bindingMessage, input.intervalSeconds, input.expiresInSeconds]);
  }

  /**
   * Claims the right to poll Tsunagi for this request now: at most once per interval, whoever asks
   * (two tabs of the mini-app do not make Tsunagi answer slow_down). 'wait' when it is too early.
   */
  async claimCibaPoll(requestId: string, lineUserId: string): Promise<{ authReqId: string; bindingMessage: string; intervalSeconds: number } | 'wait' | undefined> {
    const rows = await this.sql.query<{ auth_req_id: string; binding_message: string; interval_seconds: number }>(
      `UPDATE line_mini_app_ciba_requests SET next_poll_at = now() + make_interval(secs => interval_seconds)
       WHERE request_id_hash = $1 AND line_user_id = $2 AND next_poll_at <= now() RETURNING auth_req_id, binding_message, interval_seconds`,
      [hashOf(requestId), lineUserId]);
    const row = rows[0];
    if (row) return { authReqId: row.auth_req_id, bindingMessage: row.binding_message, intervalSeconds: row.interval_seconds };
    const waiting = await this.sql.query('SELECT 1 FROM line_mini_app_ciba_requests WHERE request_id_hash = $1 AND line_user_id = $2', [hashOf(requestId), lineUserId]);
    return waiting.length ? 'wait' : undefined;
  }

  async bindingMessageOf(requestId: string, lineUserId: string): Promise<string | undefined> {
    const rows = await this.sql.query<{ binding_message: string }>(
      'SELECT binding_message FROM line_mini_app_ciba_requests WHERE request_id_hash = $1 AND line_user_id = $2', [hashOf(requestId), lineUserId]);
    return rows[0]?.binding_message;
  }

  /** Tsunagi said slow_down: wait 5 seconds longer from now on (CIBA section 11, as RFC 8628 3.5). */
  async slowDownCiba(requestId: string): Promise<void> {
    await this.sql.query(
      `UPDATE line_mini_app_ciba_requests SET interval_seconds = interval_seconds + 5, next_poll_at = now() + make_interval(secs => interval_seconds + 5)
       WHERE request_id_hash = $1`, [hashOf(requestId)]);
  }

  async forgetCibaRequest(requestId: string): Promise<void> {
    await this.sql.query('DELETE FROM line_mini_app_ciba_requests WHERE request_id_hash = $1', [hashOf(requestId)]);
  }

  /** Consumes the pending request and links, in one transaction (LinkRefused rolls both back). */
  async linkCiba(input: { requestId: string; lineUserId: string; sub: string }): Promise<LinkResult> {
    return this.sql.transaction(async (tx) => {
      const consumed = await tx.query('DELETE FROM line_mini_app_ciba_requests WHERE request_id_hash = $1 AND line_user_id = $2 RETURNING 1',
        [hashOf(input.requestId), input.lineUserId]);
      if (consumed.length === 0) throw new LinkRefused('unknown_ciba_request');
      return insertLink(tx, input.lineUserId, input.sub);
    });
  }

  /** Method 3: where the last export pull stopped, and the client's hash key. */
  async exportState(clientId: string): Promise<{ cursor: string; hashKey: string } | undefined> {
    const rows = await this.sql.query<{ cursor: string; hash_key: string }>('SELECT cursor, hash_key FROM line_mini_app_export_state WHERE client_id = $1', [clientId]);
    return rows[0] && { cursor: rows[0].cursor, hashKey: rows[0].hash_key };
  }

  /**
   * Applies one page of the export and moves the cursor, in one transaction: a crash never leaves the
   * cursor ahead of the data. A tombstone removes the account's entry and its link.
   */
  async applyExport(clientId: string, page: { records: ExportEntry[]; nextCursor: string; hashKey: string }): Promise<void> {
    await this.sql.transaction(async (tx) => {
      for (const r of page.records) {
        if (r.type === 'tombstone') {
          await tx.query('DELETE FROM line_mini_app_export_accounts WHERE sub = $1', [r.sub]);
          await tx.query('DELETE FROM line_mini_app_links WHERE tsunagi_sub = $1', [r.sub]);
        } else {
          await tx.query(
            `INSERT INTO line_mini_app_export_accounts (sub, email_hashes, phone_hashes, link_code_hash, link_code_expires_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (sub) DO UPDATE SET email_hashes = EXCLUDED.email_hashes, phone_hashes = EXCLUDED.phone_hashes,
               link_code_hash = EXCLUDED.link_code_hash, link_code_expires_at = EXCLUDED.link_code_expires_at`,
            [r.sub, r.emailHashes, r.phoneHashes, r.linkCodeHash, r.linkCodeExpiresAt]);
        }
      }
      await tx.query(
        `INSERT INTO line_mini_app_export_state (client_id, cursor, hash_key) VALUES ($1, $2, $3)
         ON CONFLICT (client_id) DO UPDATE SET cursor = EXCLUDED.cursor, hash_key = EXCLUDED.hash_key`, [clientId, page.nextCursor, page.hashKey]);
    });
  }

  /** Counts one link-code attempt of this LINE user in the current fixed window; returns the count so far. */
  async countCodeAttempt(lineUserId: string, windowSeconds: number, now: Date): Promise<number> {
    const windowStart = new Date(Math.floor(now.getTime() / (windowSeconds * 1000)) * windowSeconds * 1000);
    await this.sql.query('DELETE FROM line_mini_app_code_attempts WHERE window_start < $1', [new Date(windowStart.getTime() - windowSeconds * 1000)]);
    const rows = await this.sql.query<{ attempts: number }>(
      `INSERT INTO line_mini_app_code_attempts (line_user_id, window_start, attempts) VALUES ($1, $2, 1)
       ON CONFLICT (line_user_id, window_start) DO UPDATE SET attempts = line_mini_app_code_attempts.attempts + 1 RETURNING attempts`,
      [lineUserId, windowStart]);
    return Number(rows[0]?.attempts ?? 0);
  }

  /** The account whose current link code has this keyed hash, with the code's expiry. */
  async findLinkCode(codeHash: string): Promise<{ sub: string; expiresAt: Date } | undefined> {
    const rows = await this.sql.query<{ sub: string; link_code_expires_at: Date }>(
      'SELECT sub, link_code_expires_at FROM line_mini_app_export_accounts WHERE link_code_hash = $1', [codeHash]);
    return rows[0] && { sub: rows[0].sub, expiresAt: new Date(rows[0].link_code_expires_at) };
  }

  /** Links by code: the code is spent (single use here too) in the same transaction as the link. */
  async linkByCode(input: { codeHash: string; lineUserId: string; sub: string }): Promise<LinkResult> {
    return this.sql.transaction(async (tx) => {
      const spent = await tx.query('UPDATE line_mini_app_export_accounts SET link_code_hash = NULL WHERE sub = $1 AND link_code_hash = $2 RETURNING 1',
        [input.sub, input.codeHash]);
      if (spent.length === 0) throw new LinkRefused('unknown_ciba_request');
      return insertLink(tx, input.lineUserId, input.sub);
    });
  }

  async unlinkLineUser(lineUserId: string): Promise<boolean> {
    return (await this.sql.query('DELETE FROM line_mini_app_links WHERE line_user_id = $1 RETURNING 1', [lineUserId])).length === 1;
  }

  async lineUserOf(sub: string): Promise<string | undefined> {
    const rows = await this.sql.query<{ line_user_id: string }>('SELECT line_user_id FROM line_mini_app_links WHERE tsunagi_sub = $1', [sub]);
    return rows[0]?.line_user_id;
  }

  async subOf(lineUserId: string): Promise<string | undefined> {
    const rows = await this.sql.query<{ tsunagi_sub: string }>('SELECT tsunagi_sub FROM line_mini_app_links WHERE line_user_id = $1', [lineUserId]);
    return rows[0]?.tsunagi_sub;
  }
}

/** One LINE user per account and one account per LINE user; the same pair again is fine. */
async function insertLink(tx: Sql, lineUserId: string, sub: string): Promise<LinkResult> {
  const inserted = await tx.query(
    'INSERT INTO line_mini_app_links (line_user_id, tsunagi_sub) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1',
    [lineUserId, sub]);
  if (inserted.length) return 'linked';
  const existing = await tx.query<{ line_user_id: string; tsunagi_sub: string }>(
    'SELECT line_user_id, tsunagi_sub FROM line_mini_app_links WHERE line_user_id = $1 OR tsunagi_sub = $2', [lineUserId, sub]);
  if (existing.some((r) => r.line_user_id === lineUserId && r.tsunagi_sub === sub)) return 'already_linked';
  throw new LinkRefused(existing.some((r) => r.line_user_id === lineUserId) ? 'line_user_linked_elsewhere' : 'account_linked_elsewhere');
}
