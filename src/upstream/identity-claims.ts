import type { UpstreamIdentityFacts } from '../accounts/proof.js';

/**
 * What an upstream sign-in proved, after every check (the facts in accounts/proof.ts, which a
 * parked identity shares), with what only the sign-in itself has.
 */
export interface UpstreamIdentityClaims extends UpstreamIdentityFacts {
  /** The configured issuer (Google's "accounts.google.com" form is normalised), so the key is stable. */
  issuer: string;
  givenName?: string;
  familyName?: string;
  /** Google Workspace domain, when the account belongs to one. */
  hostedDomain?: string;
  /** Apple's refresh token from this code exchange (store it sealed, to revoke on unlink). */
  refreshToken?: string;
}
