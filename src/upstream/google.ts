import type { JWTPayload } from 'jose';
import type { PendingUpstreamLogin } from '../accounts/upstream-login-store.js';
import type { GoogleUpstreamConfig } from '../config.js';
import type { UpstreamIdentityClaims } from './identity-claims.js';
import { claimBoolean, claimString, OidcUpstreamClient } from './oidc-client.js';
import type { AuthorizationRequest, CallbackParams, UpstreamProviderClient } from './provider-client.js';

export const REAL_GOOGLE_ISSUER = 'https://accounts.google.com';

/** Sign in with Google: authorization code + PKCE, client_secret_basic, RS256 ID tokens. */
export class GoogleUpstream implements UpstreamProviderClient {
  readonly provider = 'google' as const;
  readonly oidc: OidcUpstreamClient;

  constructor(readonly config: GoogleUpstreamConfig, options: { timeoutMs: number; clock?: () => Date; jwksCooldownMs?: number }) {
    this.oidc = new OidcUpstreamClient({
      provider: 'google',
      issuer: config.issuer,
      // Google documents both forms of its own issuer; an emulator or staging issuer gets exactly itself.
      acceptedIssuers: config.issuer === REAL_GOOGLE_ISSUER ? [REAL_GOOGLE_ISSUER, 'accounts.google.com'] : [config.issuer],
      clientId: config.clientId,
      clientSecret: () => Promise.resolve(config.clientSecret),
      tokenEndpointAuthMethod: 'client_secret_basic',
      scope: 'openid email profile',
      algorithms: ['RS256'],
      pkce: 'always',
      timeoutMs: options.timeoutMs,
      clock: options.clock,
      jwksCooldownMs: options.jwksCooldownMs,
    });
  }

  get issuer(): string { return this.config.issuer; }

  async authorizationUrl(request: AuthorizationRequest): Promise<URL> {
    return this.oidc.authorizationUrl(request);
  }

  async identityFromCallback(params: CallbackParams, pending: PendingUpstreamLogin): Promise<UpstreamIdentityClaims> {
    const code = params.code;
    if (!code) throw this.oidc.fail('upstream_error', 'the callback has no code');
    const tokens = await this.oidc.exchangeCode({ code, redirectUri: pending.redirectUri, codeVerifier: pending.codeVerifier });
    const claims = await this.oidc.verifyIdToken(tokens.idToken, pending.nonce);
    return googleIdentity(this.config.issuer, claims);
  }
}

export function googleIdentity(issuer: string, claims: JWTPayload): UpstreamIdentityClaims {
  const email = claimString(claims.email);
  const emailVerified = email !== undefined && claimBoolean(claims.email_verified);
  const hostedDomain = claimString(claims.hd);
  // Google: email_verified alone is not enough for non-Gmail addresses; the address is
  // authoritative only for gmail.com or when the Workspace domain (hd) vouches for it.
  const emailTrustedForRegistration = emailVerified && email !== undefined
    && (email.toLowerCase().endsWith('@gmail.com') || hostedDomain !== undefined);
  const identity: UpstreamIdentityClaims = {
    provider: 'google',
    issuer,
    subject: claims.sub as string,
    emailVerified,
    emailTrustedForRegistration,
    isPrivateRelay: false,
  };
  if (email) identity.email = email;
  const name = claimString(claims.name);
  if (name) identity.name = name;
  const given = claimString(claims.given_name);
  if (given) identity.givenName = given;
  const family = claimString(claims.family_name);
  if (family) identity.familyName = family;
  if (hostedDomain) identity.hostedDomain = hostedDomain;
  return identity;
}
