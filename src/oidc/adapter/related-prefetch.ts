import type pg from 'pg';
import { accountFromJson, accountJsonSql, isUuid, type Account } from '../../accounts/account-store.js';
import type { RequestScope, StoredRow } from './request-scope.js';
import type { AdapterPayload } from './types.js';

/**
 * oidc-provider reads a token, then the session it is bound to, then its grant, then its account,
 * each with its own query. The token's payload names all three, so one query reads them with it
 * and the request scope (request-scope.ts) answers the lookups that follow. A session (the
 * authorization endpoint's SSO) names its account and, for the client asking, its grant.
 */

/** Models whose artifacts name a session (when bound to one), a grant and an account. */
export const TOKEN_MODELS: ReadonlySet<string> = new Set([
  'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest',
]);

/** Models a find may read related rows with: the token models and Session. */
export function prefetchesRelated(model: string): boolean {
  return model === 'Session' || TOKEN_MODELS.has(model);
}

const LIVE = (alias: string) => `(${alias}.expires_at IS NULL OR ${alias}.expires_at > now())`;

interface RelatedColumns {
  session_uid: string | null; grant_id: string | null; account_id: string | null;
  session: AdapterPayload | null; grant: AdapterPayload | null; account: unknown;
}

/**
 * SQL reading the related rows of a row `p` (its payload in p.payload) of `model`, as the columns of
 * RelatedColumns. `$clientParam` holds the client a Session's grant is looked up for (may be NULL).
 */
function relatedSelect(model: string, clientParam: string, withAccount: boolean): string {
  const sessionUid = model === 'Session' ? 'NULL::text' : `CASE WHEN p.payload->'expiresWithSession' = 'true'::jsonb THEN p.payload->>'sessionUid' END`;
  const grantId = model === 'Session' ? `p.payload->'authorizations'->(${clientParam}::text)->>'grantId'` : `p.payload->>'grantId'`;
  return `r.session_uid, r.grant_id, r.account_id,
    (SELECT s.payload FROM oidc_payloads s WHERE s.model = 'Session' AND s.uid = r.session_uid AND ${LIVE('s')} LIMIT 1) AS session,
    (SELECT g.payload FROM oidc_payloads g WHERE g.model = 'Grant' AND g.id = r.grant_id AND ${LIVE('g')} LIMIT 1) AS grant,
    ${withAccount ? accountJsonSql('r.account_id') : 'NULL::json'} AS account
  FROM p CROSS JOIN LATERAL (SELECT ${sessionUid} AS session_uid, ${grantId} AS grant_id, p.payload->>'accountId' AS account_id) r`;
}

/** Puts what a related read found into the scope, for the session, grant and account lookups that follow. */
function remember(scope: RequestScope, found: Promise<RelatedColumns | undefined>, refs: { sessionUid?: string | null; grantId?: string | null; accountId?: string | null }, withAccount: boolean): void {
  const asRow = (payload: AdapterPayload | null | undefined): StoredRow | undefined => (payload ? { payload, consumed_at: null } : undefined);
  if (refs.sessionUid) scope.rememberRow('Session', 'uid', refs.sessionUid, found.then((r) => asRow(r?.session)));
  if (refs.grantId) scope.rememberRow('Grant', 'id', refs.grantId, found.then((r) => asRow(r?.grant)));
  if (withAccount && refs.accountId && !scope.account(refs.accountId)) {
    scope.rememberAccount(refs.accountId, found.then((r): Account | undefined => accountFromJson(r?.account)));
  }
}

/**
 * A find of `model` by `column` that also reads the rows the found artifact names, in one query,
 * and leaves them in the scope. Returns the artifact's own row, as a plain find would.
 */
export async function findWithRelated(
  pool: pg.Pool, scope: RequestScope, model: string, column: 'id' | 'uid' | 'user_code', value: string, graceSeconds: number,
): Promise<StoredRow | undefined> {
  const withAccount = scope.wantsAccount();
  const clientId = model === 'Session' ? scope.request.clientId() ?? null : null;
  const { rows } = await pool.query<StoredRow & RelatedColumns>(
    `WITH p AS (
       SELECT payload, consumed_at FROM oidc_payloads
       WHERE model = $1 AND ${column} = $2 AND (expires_at IS NULL OR expires_at > now() - make_interval(secs => $3)) LIMIT 1)
     SELECT p.payload, p.consumed_at, ${relatedSelect(model, '$4', withAccount)}`,
    model === 'Session' ? [model, value, graceSeconds, clientId] : [model, value, graceSeconds],
  );
  const row = rows[0];
  if (!row) return undefined;
  remember(scope, Promise.resolve(row), { sessionUid: row.session_uid, grantId: row.grant_id, accountId: row.account_id }, withAccount);
  return { payload: row.payload, consumed_at: row.consumed_at };
}

/**
 * For an artifact found elsewhere (Redis): starts one query for the session, grant and account it
 * names, without waiting for it; the lookups that follow wait for it in the scope.
 */
export function prefetchRelatedOf(pool: pg.Pool, scope: RequestScope, model: string, payload: AdapterPayload): void {
  if (!TOKEN_MODELS.has(model)) return;
  const str = (v: unknown) => (typeof v === 'string' && v !== '' && !v.includes('\0') ? v : null);
  const sessionUid = payload.expiresWithSession === true ? str(payload.sessionUid) : null;
  const grantId = str(payload.grantId);
  const rawAccountId = str(payload.accountId);
  const withAccount = scope.wantsAccount() && rawAccountId !== null;
  // Only what this request has not read yet; an id that is not a UUID names no account (and must
  // not reach a uuid cast that Postgres might fold before the CASE guarding it).
  const refs = {
    sessionUid: sessionUid && !scope.row('Session', 'uid', sessionUid) ? sessionUid : null,
    grantId: grantId && !scope.row('Grant', 'id', grantId) ? grantId : null,
    accountId: withAccount && rawAccountId && !scope.account(rawAccountId) ? rawAccountId : null,
  };
  if (!refs.sessionUid && !refs.grantId && !refs.accountId) return;
  const found = pool.query<RelatedColumns>(
    `WITH p AS (SELECT jsonb_build_object('expiresWithSession', $1::text IS NOT NULL, 'sessionUid', $1::text, 'grantId', $2::text, 'accountId', $3::text) AS payload)
     SELECT ${relatedSelect(model, 'NULL', refs.accountId !== null)}`,
    [refs.sessionUid, refs.grantId, refs.accountId !== null && isUuid(refs.accountId) ? refs.accountId : null],
  ).then((r) => r.rows[0]);
  remember(scope, found, refs, refs.accountId !== null);
}
