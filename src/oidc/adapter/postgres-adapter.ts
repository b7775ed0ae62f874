import type pg from 'pg';
import { expiresAtFrom, refuseUnstorable, type Adapter, type AdapterPayload, type ConsumeConflictHandler } from './types.js';

interface Row { payload: AdapterPayload; consumed_at: Date | null }

const withConsumed = (row: Row | undefined): AdapterPayload | undefined => {
  if (!row) return undefined;
  return row.consumed_at ? { ...row.payload, consumed: Math.floor(row.consumed_at.getTime() / 1000) } : row.payload;
};

/** oidc-provider artifacts in the oidc_payloads table, one instance per model. */
export class PostgresAdapter implements Adapter {
  constructor(private readonly model: string, private readonly pool: pg.Pool, private readonly onConsumeConflict: ConsumeConflictHandler) {}

  async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
    refuseUnstorable(id, payload);
    await this.pool.query(
      `INSERT INTO oidc_payloads (model, id, payload, grant_id, user_code, uid, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (model, id) DO UPDATE SET payload = EXCLUDED.payload, grant_id = EXCLUDED.grant_id,
         user_code = EXCLUDED.user_code, uid = EXCLUDED.uid, expires_at = EXCLUDED.expires_at`,
      [this.model, id, payload, payload.grantId ?? null, payload.userCode ?? null, payload.uid ?? null, expiresAtFrom(expiresIn)],
    );
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return this.findBy('id', id);
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.findBy('user_code', userCode);
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.findBy('uid', uid);
  }

  // Atomic: of two requests consuming the same code or refresh token, exactly one wins.
  async consume(id: string): Promise<void> {
    if (id.includes('\0')) return this.onConsumeConflict(this.model, undefined);
    const r = await this.pool.query(
      'UPDATE oidc_payloads SET consumed_at = now() WHERE model = $1 AND id = $2 AND consumed_at IS NULL', [this.model, id]);
    if (r.rowCount === 1) return;
    const { rows } = await this.pool.query<{ grant_id: string | null }>('SELECT grant_id FROM oidc_payloads WHERE model = $1 AND id = $2', [this.model, id]);
    await this.onConsumeConflict(this.model, rows[0]?.grant_id ?? undefined);
  }

  async destroy(id: string): Promise<void> {
    if (id.includes('\0')) return;
    await this.pool.query('DELETE FROM oidc_payloads WHERE model = $1 AND id = $2', [this.model, id]);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    if (grantId.includes('\0')) return;
    await this.pool.query('DELETE FROM oidc_payloads WHERE model = $1 AND grant_id = $2', [this.model, grantId]);
  }

  private async findBy(column: 'id' | 'uid' | 'user_code', value: string): Promise<AdapterPayload | undefined> {
    // No stored id holds a NUL (upsert refuses them), and Postgres would refuse the query.
    if (value.includes('\0')) return undefined;
    const { rows } = await this.pool.query<Row>(
      `SELECT payload, consumed_at FROM oidc_payloads
       WHERE model = $1 AND ${column} = $2 AND (expires_at IS NULL OR expires_at > now()) LIMIT 1`,
      [this.model, value],
    );
    return withConsumed(rows[0]);
  }
}

export async function sweepExpiredPayloads(pool: pg.Pool): Promise<number> {
  const r = await pool.query('DELETE FROM oidc_payloads WHERE expires_at < now()');
  return r.rowCount ?? 0;
}
