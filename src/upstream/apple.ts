import { createPrivateKey, type KeyObject } from 'node:crypto';
import { SignJWT, type JWTPayload } from 'jose';
import type { PendingUpstreamLogin } from '../accounts/upstream-login-store.js';
import type { AppleUpstreamConfig } from '../config.js';
import { UpstreamError } from './errors.js';
import type { UpstreamIdentityClaims } from './identity-claims.js';
import { claimBoolean, claimString, OidcUpstreamClient } from './oidc-client.js';
import type { AuthorizationRequest, CallbackParams, UpstreamProviderClient } from './provider-client.js';

/** Apple accepts a client_secret JWT valid for at most 6 months. */
export const APPLE_CLIENT_SECRET_MAX_SECONDS = 15_777_000;
const RELAY_DOMAIN = '@privaterelay.appleid.com';
/**
 * A notification older than this is refused even when its signature holds: replaying an old,
 * captured consent-revoked after the person linked Apple again must not unlink them. Apple delivers
 * within seconds and retries for a while; processed ones are remembered longer than this.
 */
export const APPLE_NOTIFICATION_MAX_AGE_SECONDS = 3 * 24 * 3600;

export interface AppleClientSecretTiming {
  /** How long a made client_secret is valid (default 1 day: a leaked one is short-lived). */
  lifetimeSeconds: number;
  /** A cached secret is replaced once it has less than this left (default 1 hour). */
  renewBeforeSeconds: number;
}

/**
 * Apple's client_secret: an ES256 JWT from the team's key (iss team id, sub Services ID, aud the
 * Apple issuer, kid header). Made on demand, cached, and replaced well before it expires.
 */
export class AppleClientSecret {
  private readonly key: KeyObject;
  private cached: { jwt: string; expiresAt: number } | undefined;

  constructor(
    private readonly config: AppleUpstreamConfig,
    private readonly clock: () => Date,
    private readonly timing: AppleClientSecretTiming = { lifetimeSeconds: 86_400, renewBeforeSeconds: 3_600 },
  ) {
    if (timing.lifetimeSeconds > APPLE_CLIENT_SECRET_MAX_SECONDS) throw new Error('Apple refuses client secrets valid for more than 6 months');
    if (timing.renewBeforeSeconds >= timing.lifetimeSeconds) throw new Error('the client secret must be renewed before it expires');
    this.key = createPrivateKey(config.privateKeyPem);
  }

  async current(): Promise<string> {
    const now = Math.floor(this.clock().getTime() / 1000);
    if (this.cached && this.cached.expiresAt - now > this.timing.renewBeforeSeconds) return this.cached.jwt;
    const expiresAt = now + this.timing.lifetimeSeconds;
    const jwt = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: this.config.keyId })
      .setIssuer(this.config.teamId)
      .setSubject(this.config.clientId)
      .setAudience(this.config.issuer)
      .setIssuedAt(now)
      .setExpirationTime(expiresAt)
      .sign(this.key);
    this.cached = { jwt, expiresAt };
    return jwt;
  }
}

/** Sign in with Apple: form_post back to Tsunagi, client_secret JWT, refresh token kept for revocation. */
export class AppleUpstream implements UpstreamProviderClient {
  readonly provider = 'apple' as const;
  readonly oidc: OidcUpstreamClient;
  readonly clientSecret: AppleClientSecret;

  constructor(
    readonly config: AppleUpstreamConfig,
    options: { timeoutMs: number; clock?: () => Date; jwksCooldownMs?: number; clientSecretTiming?: AppleClientSecretTiming },
  ) {
    const clock = options.clock ?? (() => new Date());
    this.clientSecret = new AppleClientSecret(config, clock, options.clientSecretTiming);
    this.oidc = new OidcUpstreamClient({
      provider: 'apple',
      issuer: config.issuer,
      acceptedIssuers: [config.issuer],
      clientId: config.clientId,
      clientSecret: () => this.clientSecret.current(),
      tokenEndpointAuthMethod: 'client_secret_post',
      // Apple's scopes; asking for name or email requires response_mode=form_post.
      scope: 'name email',
      responseMode: 'form_post',
      algorithms: ['RS256', 'ES256'],
      pkce: 'when_advertised',
      timeoutMs: options.timeoutMs,
      clock,
      jwksCooldownMs: options.jwksCooldownMs,
    });
  }

  get issuer(): string { return this.config.issuer; }

  /** Apple has no prompt parameter; login_hint is not documented either, so neither is sent. */
  async authorizationUrl(request: AuthorizationRequest): Promise<URL> {
    return this.oidc.authorizationUrl({ ...request, loginHint: undefined, prompt: undefined });
  }

  async identityFromCallback(params: CallbackParams, pending: PendingUpstreamLogin): Promise<UpstreamIdentityClaims> {
    const code = params.code;
    if (!code) throw this.oidc.fail('upstream_error', 'the callback has no code');
    // The form may also carry an id_token; only the one from the authenticated token exchange is used.
    const tokens = await this.oidc.exchangeCode({ code, redirectUri: pending.redirectUri, codeVerifier: pending.codeVerifier });
    const claims = await this.oidc.verifyIdToken(tokens.idToken, pending.nonce, (c) => c.nonce_supported === false || c.nonce_supported === 'false');
    const identity = appleIdentity(this.config.issuer, claims, parseAppleUser(params.user));
    if (tokens.refreshToken) identity.refreshToken = tokens.refreshToken;
    return identity;
  }

  /**
   * Checks the JWS of a server-to-server notification: Apple's keys (the ID-token JWKS), iss the
   * Apple issuer, aud this client, iat at most APPLE_NOTIFICATION_MAX_AGE_SECONDS old. What it says
   * (the `events` claim) is parsed by the caller.
   */
  async verifyNotification(jws: string): Promise<JWTPayload> {
    return this.oidc.verifySignedJwt(jws, APPLE_NOTIFICATION_MAX_AGE_SECONDS);
  }

  /** Revokes a refresh token (unlink, account deletion, consent withdrawn on our side). */
  async revokeToken(refreshToken: string): Promise<void> {
    const metadata = await this.oidc.discover();
    const endpoint = metadata.revocation_endpoint ?? `${this.config.issuer}/auth/revoke`;
    try {
      await this.oidc.postAuthenticated(endpoint, { token: refreshToken, token_type_hint: 'refresh_token' });
    } catch (err) {
      if (err instanceof UpstreamError && err.reason === 'token_exchange_failed') {
        throw this.oidc.fail('revoke_failed', err.message, err);
      }
      throw err;
    }
  }
}

export interface AppleUserName { name?: string; givenName?: string; familyName?: string }

/**
 * The `user` form field Apple posts on the first authorization only:
 * {"name":{"firstName":"…","lastName":"…"},"email":"…"}. Only the name is taken: it is not in the
 * ID token, while the email in the signed ID token is the one that counts.
 */
export function parseAppleUser(raw: string | undefined): AppleUserName {
  if (!raw || raw.length > 4096) return {};
  let parsed: unknown;
  try { parsed = JSON.parse(raw); } catch { return {}; }
  if (typeof parsed !== 'object' || parsed === null) return {};
  const name = (parsed as { name?: unknown }).name;
  if (typeof name !== 'object' || name === null) return {};
  const givenName = claimString((name as { firstName?: unknown }).firstName)?.slice(0, 100);
  const familyName = claimString((name as { lastName?: unknown }).lastName)?.slice(0, 100);
  const full = [givenName, familyName].filter(Boolean).join(' ');
  const result: AppleUserName = {};
  if (full) result.name = full;
  if (givenName) result.givenName = givenName;
  if (familyName) result.familyName = familyName;
  return result;
}

export function isAppleRelayAddress(email: string): boolean {
  return email.toLowerCase().endsWith(RELAY_DOMAIN);
}

export function appleIdentity(issuer: string, claims: JWTPayload, user: AppleUserName): UpstreamIdentityClaims {
  const email = claimString(claims.email);
  const emailVerified = email !== undefined && claimBoolean(claims.email_verified);
  const isPrivateRelay = claimBoolean(claims.is_private_email) || (email !== undefined && isAppleRelayAddress(email));
  const identity: UpstreamIdentityClaims = {
    provider: 'apple',
    issuer,
    subject: claims.sub as string,
    emailVerified,
    emailTrustedForRegistration: emailVerified && !isPrivateRelay,
    isPrivateRelay,
    ...user,
  };
  if (email) identity.email = email;
  return identity;
}
