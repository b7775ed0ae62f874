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
CREATE TABLE IF NOT EXISTS line_mini_app_used_tokens (
  jti        text PRIMARY KEY,
  expires_at timestamptz NOT NULL
);
`;

export type LinkResult = 'linked' | 'already_linked';

export type LinkRefusal = 'unknown_nonce' | 'nonce_of_other_line_user' | 'token_replayed' | 'line_user_linked_elsewhere' | 'account_linked_elsewhere';

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
      const inserted = await tx.query(
        'INSERT INTO line_mini_app_links (line_user_id, tsunagi_sub) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1',
        [input.lineUserId, input.sub]);
      if (inserted.length) return 'linked';
      const existing = await tx.query<{ line_user_id: string; tsunagi_sub: string }>(
        'SELECT line_user_id, tsunagi_sub FROM line_mini_app_links WHERE line_user_id = $1 OR tsunagi_sub = $2', [input.lineUserId, input.sub]);
      if (existing.some((r) => r.line_user_id === input.lineUserId && r.tsunagi_sub === input.sub)) return 'already_linked';
      throw new LinkRefused(existing.some((r) => r.line_user_id === input.lineUserId) ? 'line_user_linked_elsewhere' : 'account_linked_elsewhere');
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
