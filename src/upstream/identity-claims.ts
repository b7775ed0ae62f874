import type { UpstreamProviderName } from '../accounts/upstream-identity-store.js';

/** What an upstream sign-in proved, after every check. The identity key is (issuer, subject). */
export interface UpstreamIdentityClaims {
  provider: UpstreamProviderName;
  /** The configured issuer (Google's "accounts.google.com" form is normalised), so the key is stable. */
  issuer: string;
  subject: string;
  email?: string;
  /** The provider's email_verified, as a boolean whatever type it came in. */
  emailVerified: boolean;
  /**
   * Whether Tsunagi may register/match this email as verified. Google: email_verified and (a
   * gmail.com address or a Workspace `hd`). Apple: email_verified and not a private relay.
   */
  emailTrustedForRegistration: boolean;
  /** Apple's Hide My Email relay address (is_private_email, or an @privaterelay.appleid.com address). */
  isPrivateRelay: boolean;
  name?: string;
  givenName?: string;
  familyName?: string;
  /** Google Workspace domain, when the account belongs to one. */
  hostedDomain?: string;
  /** Apple's refresh token from this code exchange (store it sealed, to revoke on unlink). */
  refreshToken?: string;
}
