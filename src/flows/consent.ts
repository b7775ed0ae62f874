import type { Provider } from 'oidc-provider';
import type { Account } from '../accounts/account-store.js';
import { formatPhoneNumber } from '../accounts/phone-number.js';

type Interaction = Awaited<ReturnType<Provider['interactionDetails']>>;

interface ConsentDetails {
  missingOIDCScope?: string[];
  missingOIDCClaims?: string[];
  missingResourceScopes?: Record<string, string[]>;
}

/** What the consent screen lists: the scopes and claims this client asks for that the person has not granted yet. */
export function describeConsent(details: Interaction): { scopes: string[]; claims: string[] } {
  const d = details.prompt.details as ConsentDetails;
  return {
    scopes: (d.missingOIDCScope ?? []).filter((s) => s !== 'openid'),
    claims: (d.missingOIDCClaims ?? []).filter((c) => !['sub', 'sid', 'auth_time', 'acr', 'amr', 'iss'].includes(c)),
  };
}

/**
 * How the consent screen names the signed-in account, so that a person on a shared device sees whose
 * data the client gets: the primary email address, else a phone number, else the name.
 */
export function signedInAs(account: Account, defaultPhoneRegion: string): string {
  const email = account.emails.find((e) => e.isPrimary && e.verifiedAt) ?? account.emails.find((e) => e.verifiedAt);
  if (email) return email.address;
  const phone = account.phones.find((p) => p.verifiedAt);
  if (phone) return formatPhoneNumber(phone.phone, defaultPhoneRegion);
  return account.name ?? '';
}

/** The person agreed: add exactly what was missing to the grant (a new one if none) and save it. */
export async function grantConsent(provider: Provider, details: Interaction): Promise<string> {
  const accountId = details.session?.accountId;
  if (!accountId) throw new Error('consent without a signed-in account');
  const grant = (details.grantId ? await provider.Grant.find(details.grantId) : undefined)
    ?? new provider.Grant({ accountId, clientId: details.params.client_id as string });
  const d = details.prompt.details as ConsentDetails;
  if (d.missingOIDCScope?.length) grant.addOIDCScope(d.missingOIDCScope.join(' '));
  if (d.missingOIDCClaims?.length) grant.addOIDCClaims(d.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) grant.addResourceScope(indicator, scopes.join(' '));
  return grant.save();
}
