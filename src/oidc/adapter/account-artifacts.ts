import type pg from 'pg';

/** A browser session of an account, as an operator or the person's data export sees it. */
export interface SessionSummary { id: string; signedInAt: Date | null; amr: string[]; clientIds: string[]; expiresAt: Date | null }

/** Live oidc-provider Sessions of an account (always in Postgres: src/oidc/adapter/types.ts). */
export async function listSessionsOfAccount(pool: pg.Pool, accountId: string): Promise<SessionSummary[]> {
  const { rows } = await pool.query<{ id: string; payload: { loginTs?: number; amr?: string[]; authorizations?: Record<string, unknown> }; expires_at: Date | null }>(
    `SELECT id, payload, expires_at FROM oidc_payloads
     WHERE model = 'Session' AND payload->>'accountId' = $1 AND (expires_at IS NULL OR expires_at > now())
     ORDER BY (payload->>'loginTs')::bigint DESC NULLS LAST`,
    [accountId],
  );
  return rows.map((r) => ({
    id: r.id,
    signedInAt: typeof r.payload.loginTs === 'number' ? new Date(r.payload.loginTs * 1000) : null,
    amr: Array.isArray(r.payload.amr) ? r.payload.amr : [],
    clientIds: Object.keys(r.payload.authorizations ?? {}),
    expiresAt: r.expires_at,
  }));
}

/** Accounts that have (or had, while the grant lives) granted this client: where a pairwise `sub` is looked for first. */
export async function accountIdsWithGrantsFor(pool: pg.Pool, clientId: string): Promise<string[]> {
  const { rows } = await pool.query<{ account_id: string }>(
    `SELECT DISTINCT payload->>'accountId' AS account_id FROM oidc_payloads WHERE model = 'Grant' AND payload->>'clientId' = $1`, [clientId]);
  return rows.map((r) => r.account_id).filter((id): id is string => typeof id === 'string');
}
