import type pg from 'pg';

/**
 * Deletes every stored oidc-provider Session of an account, so each browser signed in as it is
 * signed out at its next request. Sessions live in Postgres whether or not Redis is configured
 * (LOSABLE_MODELS in ./types.ts), and nothing caches them, so this one statement is enough.
 */
export async function deleteSessionsOfAccount(pool: pg.Pool, accountId: string): Promise<number> {
  const r = await pool.query(`DELETE FROM oidc_payloads WHERE model = 'Session' AND payload->>'accountId' = $1`, [accountId]);
  return r.rowCount ?? 0;
}
