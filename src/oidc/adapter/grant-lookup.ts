import type pg from 'pg';

/**
 * The newest live grant an account gave a client, whatever browser session it was given in: consent
 * belongs to the person, not to a cookie. Grants are always in Postgres (they are durable).
 */
export async function findLatestGrantId(pool: pg.Pool, accountId: string, clientId: string): Promise<string | undefined> {
  const { rows } = await pool.query<{ id: string }>(
    `SELECT id FROM oidc_payloads
     WHERE model = 'Grant' AND payload->>'accountId' = $1 AND payload->>'clientId' = $2
       AND (expires_at IS NULL OR expires_at > now())
     ORDER BY (payload->>'iat')::bigint DESC LIMIT 1`,
    [accountId, clientId],
  );
  return rows[0]?.id;
}

export interface GrantSummary { grantId: string; clientId: string; scope: string; grantedAt: Date }

/** The applications an account has granted access to (one row per live grant). */
export async function listGrantsOfAccount(pool: pg.Pool, accountId: string): Promise<GrantSummary[]> {
  const { rows } = await pool.query<{ id: string; client_id: string; scope: string | null; iat: string }>(
    `SELECT id, payload->>'clientId' AS client_id, payload->'openid'->>'scope' AS scope, payload->>'iat' AS iat
     FROM oidc_payloads
     WHERE model = 'Grant' AND payload->>'accountId' = $1 AND (expires_at IS NULL OR expires_at > now())
     ORDER BY (payload->>'iat')::bigint DESC`,
    [accountId],
  );
  return rows.map((r) => ({ grantId: r.id, clientId: r.client_id, scope: r.scope ?? '', grantedAt: new Date(Number(r.iat) * 1000) }));
}
