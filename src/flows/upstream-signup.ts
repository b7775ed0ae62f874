import type { EmailAddress } from '../accounts/email-address.js';
import type { Locale } from '../i18n/index.js';
import type { ParkedUpstreamIdentity } from '../accounts/proof.js';
import type { AccountSettings } from './account-settings.js';
import type { RequestFacts } from './login.js';
import { confirmUpstreamSignup, pendingUpstream, vouchedEmail, type UpstreamDeps, type UpstreamSignupOutcome } from './upstream.js';

/**
 * Signup from an upstream identity nobody has (step 3 of decideAfterUpstreamLogin), as named steps:
 * offer (what the confirmation screen shows), confirm (confirmUpstreamSignup's one transaction, then
 * the "welcome" notification), or cancel. The sign-in that follows goes through src/flows/sign-in.ts.
 */
export interface UpstreamSignupOffer {
  identity: ParkedUpstreamIdentity;
  /** The address the account would be registered with; none for a relay or an unvouched address. */
  email: EmailAddress | undefined;
  /** Why no address is registered, when none is. */
  withoutEmail: 'relay' | 'unverified' | 'no_email' | undefined;
}

export async function upstreamSignupOffer(deps: Pick<UpstreamDeps, 'proofs' | 'now'>, interactionUid: string): Promise<UpstreamSignupOffer | undefined> {
  const waiting = await pendingUpstream(deps, interactionUid, 'upstream_signup');
  if (!waiting) return undefined;
  const { identity } = waiting;
  const email = vouchedEmail(identity);
  return { identity, email, withoutEmail: email ? undefined : identity.isPrivateRelay ? 'relay' : identity.email ? 'unverified' : 'no_email' };
}

export async function signUpWithUpstream(
  deps: UpstreamDeps & { settings: Pick<AccountSettings, 'notify'> }, interactionUid: string, facts: RequestFacts, locale: Locale,
): Promise<UpstreamSignupOutcome> {
  const outcome = await confirmUpstreamSignup(deps, interactionUid, facts);
  if (outcome.ok) await deps.settings.notify(outcome.account, 'signup', locale);
  return outcome;
}

export async function cancelUpstreamSignup(deps: Pick<UpstreamDeps, 'proofs' | 'now'>, interactionUid: string): Promise<void> {
  await deps.proofs.discard(interactionUid, 'upstream_signup', deps.now?.() ?? new Date());
}
