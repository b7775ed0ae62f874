import type pg from 'pg';

/** One account's state in a client's export, as of the latest change past the cursor. */
export type ExportRow =
  | { kind: 'account'; seq: number; accountId: string; emailKeys: string[]; phones: string[]; linkCodeHash: string | null; linkCodeExpiresAt: Date | null }
  | { kind: 'tombstone'; seq: number; accountId: string };

interface ChangeRow {
  seq: string; account_id: string; member: boolean; email_keys: string[] | null; phones: string[] | null;
  code_hash: string | null; code_expires_at: Date | null;
}

// All SQL of method 3: who shares with which app, link codes, and the change log (filled by triggers).
export class ClientExportStore {
  constructor(private readonly pool: pg.Pool) {}

  /** Makes (or rotates) the person's link code for an app, and adds them to the app's export. */
  async issueLinkCode(clientId: string, accountId: string, codeHash: string, expiresAt: Date): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('INSERT INTO client_export_members (client_id, account_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [clientId, accountId]);
      await client.query(
        `INSERT INTO client_link_codes (client_id, account_id, code_hash, expires_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (client_id, account_id) DO UPDATE SET code_hash = EXCLUDED.code_hash, expires_at = EXCLUDED.expires_at`,
        [clientId, accountId, codeHash, expiresAt]);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  /** The person stops sharing with the app: their next export entry is a tombstone. */
  async leave(clientId: string, accountId: string): Promise<boolean> {
    await this.pool.query('DELETE FROM client_link_codes WHERE client_id = $1 AND account_id = $2', [clientId, accountId]);
    const r = await this.pool.query('DELETE FROM client_export_members WHERE client_id = $1 AND account_id = $2', [clientId, accountId]);
    return r.rowCount === 1;
  }

  async isMember(clientId: string, accountId: string): Promise<boolean> {
    const r = await this.pool.query('SELECT 1 FROM client_export_members WHERE client_id = $1 AND account_id = $2', [clientId, accountId]);
    return r.rowCount === 1;
  }

  /**
   * The accounts whose export entry changed after `sinceSeq`, each once with its current state (or a
   * tombstone when it no longer shares with the app), in change order, at most `limit`.
   */
  async changesSince(clientId: string, sinceSeq: number, limit: number): Promise<ExportRow[]> {
    const { rows } = await this.pool.query<ChangeRow>(
      `WITH latest AS (
         SELECT account_id, max(seq) AS seq FROM client_export_changes WHERE client_id = $1 AND seq > $2 GROUP BY account_id
         ORDER BY max(seq) LIMIT $3
       )
       SELECT l.seq::text AS seq, l.account_id,
         EXISTS (SELECT 1 FROM client_export_members m WHERE m.client_id = $1 AND m.account_id = l.account_id) AS member,
         (SELECT array_agg(e.email_key ORDER BY e.email_key) FROM account_emails e WHERE e.account_id = l.account_id AND e.verified_at IS NOT NULL) AS email_keys,
         (SELECT array_agg(p.phone ORDER BY p.phone) FROM account_phones p WHERE p.account_id = l.account_id AND p.verified_at IS NOT NULL) AS phones,
         c.code_hash, c.expires_at AS code_expires_at
       FROM latest l LEFT JOIN client_link_codes c ON c.client_id = $1 AND c.account_id = l.account_id
       ORDER BY l.seq`,
      [clientId, sinceSeq, limit]);
    return rows.map((r): ExportRow => (r.member
      ? { kind: 'account', seq: Number(r.seq), accountId: r.account_id, emailKeys: r.email_keys ?? [], phones: r.phones ?? [], linkCodeHash: r.code_hash, linkCodeExpiresAt: r.code_expires_at }
      : { kind: 'tombstone', seq: Number(r.seq), accountId: r.account_id }));
  }
}
