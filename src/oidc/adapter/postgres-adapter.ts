import type pg from 'pg';
import { findWithRelated, prefetchesRelated } from './related-prefetch.js';
import { currentRequestScope, type StoredRow } from './request-scope.js';
import { EXPIRED_ARTIFACT_GRACE_SECONDS, KEPT_PAST_EXPIRY_MODELS, expiresAtFrom, refuseUnstorable, type Adapter, type AdapterPayload, type ConsumeConflictHandler } from './types.js';

type Row = StoredRow;

// Models never consumed: what this request wrote is exactly what a find would read back.
const WRITTEN_AS_READ = new Set(['Session', 'Grant']);

export interface PostgresAdapterOptions {
  /**
   * Seconds after its first use during which a consumed artifact may be consumed again (0: never).
   * Only rotated refresh tokens get one: two tabs of one app refreshing at once both present the
   * same token, and without it the second would be taken for a replay and revoke the grant.
   */
  reuseSeconds?: number;
  /** When an artifact is consumed and whether a reuse is still within its interval (tests move it). */
  now?: () => Date;
  /** Seconds the artifacts stay findable past their expiry (types.ts: KEPT_PAST_EXPIRY_MODELS). */
  graceSeconds?: number;
}

/**
 * oidc-provider artifacts in the oidc_payloads table, one instance per model. `expires_at` is the
 * artifact's own expiry; a model kept past expiry (types.ts) is still found `graceSeconds` after it.
 * Inside an oidc-provider request (request-scope.ts) a token or session is read together with the
 * session, grant and account it names (related-prefetch.ts), and each row is read once per request.
 */
export class PostgresAdapter implements Adapter {
  private readonly reuseSeconds: number;
  private readonly now: () => Date;
  private readonly graceSeconds: number;

  constructor(
    private readonly model: string,
    private readonly pool: pg.Pool,
    private readonly onConsumeConflict: ConsumeConflictHandler,
    options: PostgresAdapterOptions = {},
  ) {
    this.reuseSeconds = options.reuseSeconds ?? 0;
    this.now = options.now ?? (() => new Date());
    this.graceSeconds = options.graceSeconds ?? 0;
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
    refuseUnstorable(id, payload);
    currentRequestScope()?.forgetModel(this.model);
    await this.pool.query(
      `INSERT INTO oidc_payloads (model, id, payload, grant_id, user_code, uid, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (model, id) DO UPDATE SET payload = EXCLUDED.payload, grant_id = EXCLUDED.grant_id,
         user_code = EXCLUDED.user_code, uid = EXCLUDED.uid, expires_at = EXCLUDED.expires_at`,
      [this.model, id, payload, payload.grantId ?? null, payload.userCode ?? null, payload.uid ?? null, expiresAtFrom(expiresIn)],
    );
    const scope = currentRequestScope();
    if (scope) {
      scope.forgetModel(this.model);
      if (WRITTEN_AS_READ.has(this.model) && (!expiresIn || expiresIn > 0)) {
        const row = Promise.resolve({ payload: structuredClone(payload), consumed_at: null });
        scope.rememberRow(this.model, 'id', id, row);
        if (typeof payload.uid === 'string') scope.rememberRow(this.model, 'uid', payload.uid, row);
      }
    }
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

  // Atomic: of two requests consuming the same code or refresh token, exactly one wins, unless the
  // model has a reuse interval: then every consume within it wins, and the interval stays anchored
  // at the first use (COALESCE), so reusing a token does not stretch its own window. The one UPDATE
  // decides, whatever find() said a moment before.
  async consume(id: string): Promise<void> {
    if (id.includes('\0')) return this.onConsumeConflict(this.model, undefined);
    currentRequestScope()?.forgetModel(this.model);
    const r = await this.pool.query(
      `UPDATE oidc_payloads SET consumed_at = COALESCE(consumed_at, $3)
       WHERE model = $1 AND id = $2 AND (consumed_at IS NULL OR ($4 > 0 AND consumed_at > $3::timestamptz - make_interval(secs => $4)))`,
      [this.model, id, this.now(), this.reuseSeconds]);
    if (r.rowCount === 1) return;
    const { rows } = await this.pool.query<{ grant_id: string | null }>('SELECT grant_id FROM oidc_payloads WHERE model = $1 AND id = $2', [this.model, id]);
    await this.onConsumeConflict(this.model, rows[0]?.grant_id ?? undefined);
  }

  async destroy(id: string): Promise<void> {
    if (id.includes('\0')) return;
    currentRequestScope()?.forgetModel(this.model);
    await this.pool.query('DELETE FROM oidc_payloads WHERE model = $1 AND id = $2', [this.model, id]);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    if (grantId.includes('\0')) return;
    currentRequestScope()?.forgetModel(this.model);
    await this.pool.query('DELETE FROM oidc_payloads WHERE model = $1 AND grant_id = $2', [this.model, grantId]);
  }

  private async findBy(column: 'id' | 'uid' | 'user_code', value: string): Promise<AdapterPayload | undefined> {
    // No stored id holds a NUL (upsert refuses them), and Postgres would refuse the query.
    if (value.includes('\0')) return undefined;
    const scope = currentRequestScope();
    if (!scope) return this.withConsumed(await this.read(column, value));
    const known = scope.row(this.model, column, value);
    if (known) {
      // Each find gets its own copy, as from the database: oidc-provider may change what it is given.
      const row = await known;
      return this.withConsumed(row && { payload: structuredClone(row.payload), consumed_at: row.consumed_at });
    }
    const reading = prefetchesRelated(this.model)
      ? findWithRelated(this.pool, scope, this.model, column, value, this.graceSeconds)
      : this.read(column, value);
    scope.rememberRow(this.model, column, value, reading.then((row) => row && { payload: structuredClone(row.payload), consumed_at: row.consumed_at }));
    return this.withConsumed(await reading);
  }

  private async read(column: 'id' | 'uid' | 'user_code', value: string): Promise<Row | undefined> {
    const { rows } = await this.pool.query<Row>(
      `SELECT payload, consumed_at FROM oidc_payloads
       WHERE model = $1 AND ${column} = $2 AND (expires_at IS NULL OR expires_at > now() - make_interval(secs => $3)) LIMIT 1`,
      [this.model, value, this.graceSeconds],
    );
    return rows[0];
  }

  // oidc-provider treats any `consumed` as a replay (a refresh token's revokes its grant); within
  // the reuse interval the artifact is shown as not consumed yet, and consume() lets it through.
  private withConsumed(row: Row | undefined): AdapterPayload | undefined {
    if (!row) return undefined;
    if (!row.consumed_at || this.withinReuseInterval(row.consumed_at)) return row.payload;
    return { ...row.payload, consumed: Math.floor(row.consumed_at.getTime() / 1000) };
  }

  private withinReuseInterval(consumedAt: Date): boolean {
    return this.reuseSeconds > 0 && this.now().getTime() - consumedAt.getTime() < this.reuseSeconds * 1000;
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
