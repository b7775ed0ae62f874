import type { UpstreamProviderName } from '../accounts/upstream-identity-store.js';
import type { PendingUpstreamLogin } from '../accounts/upstream-login-store.js';
import type { UpstreamIdentityClaims } from './identity-claims.js';
import type { OidcUpstreamClient } from './oidc-client.js';

/** The callback's parameters (query for Google, form body for Apple), parsed to single strings. */
export interface CallbackParams {
  code?: string;
  state?: string;
  error?: string;
  /** Apple: the name, as JSON, on the first authorization only. */
  user?: string;
}

export interface AuthorizationRequest {
  redirectUri: string;
  state: string;
  nonce: string;
  codeVerifier: string;
  loginHint?: string | undefined;
  prompt?: string | undefined;
}

/** What Google and Apple each add to the shared OIDC client. */
export interface UpstreamProviderClient {
  readonly provider: UpstreamProviderName;
  readonly issuer: string;
  readonly oidc: OidcUpstreamClient;
  authorizationUrl(request: AuthorizationRequest): Promise<URL>;
  /** Exchanges the code, checks the ID token against the pending login, and maps the claims. */
  identityFromCallback(params: CallbackParams, pending: PendingUpstreamLogin): Promise<UpstreamIdentityClaims>;
}
