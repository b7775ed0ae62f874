import type pg from 'pg';
import type { Provider } from 'oidc-provider';
import type { Logger } from '../logger.js';
import { deleteSessionsOfAccount, type StoredSession } from './adapter/account-sessions.js';
import { listGrantsOfAccount } from './adapter/grant-lookup.js';
import { revokeGrant } from './session-ending.js';

/** oidc-provider's Client sends the logout token itself (the same call its end_session endpoint makes). */
interface LogoutCapableClient { clientId: string; backchannelLogoutUri?: string; backchannelLogout(sub: string, sid: string | undefined): Promise<void> }

export interface EndedEverywhere {
  sessions: number;
  grants: number;
  /** One entry per relying party told by back-channel logout (ok false: it did not answer 200). */
  logouts: Array<{ clientId: string; ok: boolean }>;
}

/**
 * Signs an account out everywhere at once: deletes every browser session, revokes every grant (and
 * the tokens issued under it), and tells each relying party that a session authorized and that has
 * a backchannel_logout_uri, with the session's `sid`, as oidc-provider's end_session does on an
 * RP-initiated logout. A relying party that does not answer is logged, and changes nothing: its
 * tokens are already revoked.
 */
export async function endEverywhere(deps: { pool: pg.Pool; provider: () => Provider; log: Logger }, accountId: string): Promise<EndedEverywhere> {
  const provider = deps.provider();
  const ended: StoredSession[] = [];
  const deleted = await deleteSessionsOfAccount({ pool: deps.pool }, accountId, (s) => { ended.push(s); return true; });
  const grantIds = new Set([...deleted.grantIds, ...(await listGrantsOfAccount(deps.pool, accountId)).map((g) => g.grantId)]);
  for (const grantId of grantIds) await revokeGrant(provider, grantId);

  const targets: Array<{ clientId: string; sid: string | undefined }> = [];
  for (const session of ended) {
    for (const [clientId, authorization] of Object.entries(session.authorizations ?? {})) {
      const sid = (authorization as { sid?: unknown } | undefined)?.sid;
      targets.push({ clientId, sid: typeof sid === 'string' ? sid : undefined });
    }
  }
  const logouts = await Promise.all(targets.map(async ({ clientId, sid }) => {
    const client = (await provider.Client.find(clientId)) as unknown as LogoutCapableClient | undefined;
    if (!client?.backchannelLogoutUri) return undefined;
    try {
      await client.backchannelLogout(accountId, sid);
      return { clientId, ok: true };
    } catch (err) {
      deps.log.warn({ err, clientId }, 'back-channel logout was not acknowledged');
      return { clientId, ok: false };
    }
  }));
  return { sessions: deleted.deleted, grants: grantIds.size, logouts: logouts.filter((l): l is { clientId: string; ok: boolean } => l !== undefined) };
}
