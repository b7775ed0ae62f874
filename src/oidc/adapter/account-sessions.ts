import type pg from 'pg';

/** The part of a stored oidc-provider Session that says how it was signed in and what it was granted. */
export interface StoredSession {
  loginTs?: number;
  amr?: string[];
  /** Per client: the grant this session authorized (oidc-provider's session.authorizations). */
  authorizations?: Record<string, { grantId?: string } | undefined>;
}

export interface DeletedSessions { deleted: number; grantIds: string[] }

/**
  * Deletes stored oidc-provider Sessions of an account (all of them, or those `which` picks), so each
  * browser signed in as it is signed out at its next request, and hands back the grants those
  * sessions authorized. Sessions live in Postgres whether or not Redis is configured (LOSABLE_MODELS
  * in ./types.ts), and nothing caches them, so deleting the rows is enough.
  */
export async function deleteSessionsOfAccount(
  store: { pool: pg.Pool },
  accountId: string,
  which: (session: StoredSession) => boolean = () => true,
): Promise<DeletedSessions> {
  const grantIds = new Set<string>();
  const { rows } = await store.pool.query<{ id: string; payload: StoredSession }>(
    `SELECT id, payload FROM oidc_payloads WHERE model = 'Session' AND payload->>'accountId' = $1`, [accountId]);
  const doomed = rows.filter((r) => which(r.payload));
  if (doomed.length === 0) return { deleted: 0, grantIds: [] };
  const r = await store.pool.query(`DELETE FROM oidc_payloads WHERE model = 'Session' AND id = ANY($1::text[])`, [doomed.map((d) => d.id)]);
  for (const d of doomed) {
    for (const a of Object.values(d.payload.authorizations ?? {})) if (typeof a?.grantId === 'string') grantIds.add(a.grantId);
  }
  return { deleted: r.rowCount ?? 0, grantIds: [...grantIds] };
}
