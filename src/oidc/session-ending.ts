import type pg from 'pg';
import type { Provider } from 'oidc-provider';
import { deleteSessionsOfAccount, type StoredSession } from './adapter/account-sessions.js';
import { listGrantsOfAccount } from './adapter/grant-lookup.js';

export interface SessionEndingDeps {
  pool: pg.Pool;
  provider: () => Provider;
}

/** A grant and everything issued under it stop working. */
export async function revokeGrant(provider: Provider, grantId: string): Promise<void> {
  await Promise.all([
    provider.AccessToken.adapter.revokeByGrantId(grantId),
    provider.RefreshToken.adapter.revokeByGrantId(grantId),
    provider.AuthorizationCode.adapter.revokeByGrantId(grantId),
  ]);
  await provider.Grant.adapter.destroy(grantId);
}

/**
 * Ends browser sessions of an account when a provider says so (Apple's revocations, Google's RISC
 * events). `sessions` picks which (default all); `grants` says which grants end with them: every
 * grant of the account, only those the ended sessions authorized, or none (the relying parties keep
 * their tokens: "sessions revoked" is about browsers).
 */
export async function endSessionsOfAccount(
  deps: SessionEndingDeps, accountId: string,
  opts: { sessions?: (session: StoredSession) => boolean; grants: 'all' | 'of_ended_sessions' | 'none' },
): Promise<{ sessions: number; grants: number }> {
  const provider = deps.provider();
  const ended = await deleteSessionsOfAccount({ pool: deps.pool }, accountId, opts.sessions);
  let grantIds: string[] = [];
  if (opts.grants === 'all') grantIds = (await listGrantsOfAccount(deps.pool, accountId)).map((g) => g.grantId);
  else if (opts.grants === 'of_ended_sessions') grantIds = ended.grantIds;
  for (const grantId of grantIds) await revokeGrant(provider, grantId);
  return { sessions: ended.deleted, grants: grantIds.length };
}
