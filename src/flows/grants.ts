import type { Account } from '../accounts/account-store.js';
import type { Locale } from '../i18n/index.js';
import type { AccountSettings } from './account-settings.js';
import type { RequestFacts } from './login.js';

/**
 * Ending what an account granted to relying parties. The oidc side (src/oidc/session-ending.ts) does
 * the revoking; which grant, whose, and what is recorded and announced is decided here, once, for the
 * account page and for the providers' notifications.
 */
export interface GrantDeps {
  /** Who a grant belongs to, if it exists. */
  grantOwner(grantId: string): Promise<{ accountId: string; clientId: string } | undefined>;
  /** The grant and everything issued under it stop working. */
  revokeGrant(grantId: string): Promise<void>;
  /** Every grant of the account (and what was issued under it), and its browser sessions. */
  endSessionsAndGrants(accountId: string): Promise<void>;
  settings: Pick<AccountSettings, 'announce'>;
}

/** The person revokes one application on the account page: only a grant of their own account. */
export async function revokeGrantOfAccount(deps: GrantDeps, account: Account, grantId: string, facts: RequestFacts, locale: Locale): Promise<'revoked' | 'not_found'> {
  const grant = await deps.grantOwner(grantId);
  if (!grant || grant.accountId !== account.id) return 'not_found';
  await deps.revokeGrant(grantId);
  await deps.settings.announce(account, 'grant_revoked', { client_id: grant.clientId }, facts, locale);
  return 'revoked';
}

/** A provider says the person withdrew (Apple's consent-revoked, account-delete): every grant and session ends. */
export async function endEverythingOfAccount(deps: Pick<GrantDeps, 'endSessionsAndGrants'>, accountId: string): Promise<void> {
  await deps.endSessionsAndGrants(accountId);
}
