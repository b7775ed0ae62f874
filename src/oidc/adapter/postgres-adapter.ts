import type pg from 'pg';
import { EXPIRED_ARTIFACT_GRACE_SECONDS, KEPT_PAST_EXPIRY_MODELS, expiresAtFrom, type Adapter, type AdapterPayload, type ConsumeConflictHandler } from './types.js';

interface Row { payload: AdapterPayload; consumed_at: Date | null }

const withConsumed = (row: Row | undefined): AdapterPayload | undefined => {
  if (!row) return undefined;
  return row.consumed_at ? { ...row.payload, consumed: Math.floor(row.consumed_at.getTime() / 1000) } : row.payload;
};

/**
 * oidc-provider artifacts in the oidc_payloads table, one instance per model. `expires_at` is the
 * artifact's own expiry; a model kept past expiry (types.ts) is still found `graceSeconds` after it.
 */
export class PostgresAdapter implements Adapter {
  constructor(
    private readonly model: string,
    private readonly pool: pg.Pool,
    private readonly onConsumeConflict: ConsumeConflictHandler,
    private readonly graceSeconds = 0,
  ) {}

  async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
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
    const r = await this.pool.query(
      'UPDATE oidc_payloads SET consumed_at = now() WHERE model = $1 AND id = $2 AND consumed_at IS NULL', [this.model, id]);
    if (r.rowCount === 1) return;
    const { rows } = await this.pool.query<{ grant_id: string | null }>('SELECT grant_id FROM oidc_payloads WHERE model = $1 AND id = $2', [this.model, id]);
    await this.onConsumeConflict(this.model, rows[0]?.grant_id ?? undefined);
  }

  async destroy(id: string): Promise<void> {
    await this.pool.query('DELETE FROM oidc_payloads WHERE model = $1 AND id = $2', [this.model, id]);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    await this.pool.query('DELETE FROM oidc_payloads WHERE model = $1 AND grant_id = $2', [this.model, grantId]);
  }

  private async findBy(column: 'id' | 'uid' | 'user_code', value: string): Promise<AdapterPayload | undefined> {
    const { rows } = await this.pool.query<Row>(
      `SELECT payload, consumed_at FROM oidc_payloads
       WHERE model = $1 AND ${column} = $2 AND (expires_at IS NULL OR expires_at > now() - make_interval(secs => $3)) LIMIT 1`,
      [this.model, value, this.graceSeconds],
    );
    return withConsumed(rows[0]);
  }
}

/** Deletes what no find returns any more: expired artifacts, those kept past expiry once their grace is over. */
export async function sweepExpiredPayloads(pool: pg.Pool, graceSeconds = EXPIRED_ARTIFACT_GRACE_SECONDS): Promise<number> {
  const r = await pool.query(
    `DELETE FROM oidc_payloads
     WHERE expires_at < now() - CASE WHEN model = ANY($1::text[]) THEN make_interval(secs => $2) ELSE interval '0' END`,
    [[...KEPT_PAST_EXPIRY_MODELS], graceSeconds],
  );
  return r.rowCount ?? 0;
}
