import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { ApiError } from './errors.js';

export interface VerifiedSignIn {
  sub: string;
  /** When the person last signed in at Tsunagi (seconds since the epoch). */
  authTime: number;
  /** The ID token's nonce; access tokens have none. */
  nonce: string | undefined;
  /** The access token's id, so one token links once; ID tokens are made single-use by their nonce. */
  jti: string | undefined;
  exp: number;
}

const ALGORITHMS = ['RS256', 'ES256', 'EdDSA'];

/** Verifies Tsunagi's tokens with nothing but Tsunagi's discovery document and its published keys. */
export class TsunagiTokenVerifier {
  private jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
  private discovered: Record<string, unknown> | undefined;

  constructor(private readonly issuer: string, private readonly clientId: string, private readonly resource: string | undefined) {}

  /** An ID token issued to the LIFF page (aud = its client id), carrying the nonce this backend handed out. */
  async verifyIdToken(idToken: string): Promise<VerifiedSignIn> {
    const payload = await this.verify(idToken, { audience: this.clientId, requiredClaims: ['sub', 'exp', 'iat', 'auth_time', 'nonce'] }, 'ID token');
    // With several audiences, the token must say it was issued to our client (OIDC Core 3.1.3.7).
    if (Array.isArray(payload.aud) && payload.aud.length > 1 && payload.azp !== this.clientId) {
      throw new ApiError(401, 'invalid_tsunagi_token', 'The ID token was issued to another client (azp).');
    }
    return signIn(payload, typeof payload.nonce === 'string' ? payload.nonce : undefined);
  }

  /**
   * Method 2: the ID token this backend itself polled from the token endpoint (CIBA), issued to its
   * own confidential client. No nonce: the binding is the auth_req_id only this backend knows.
   */
  async verifyCibaIdToken(idToken: string, cibaClientId: string): Promise<VerifiedSignIn> {
    const payload = await this.verify(idToken, { audience: cibaClientId, requiredClaims: ['sub', 'exp', 'iat'] }, 'ID token');
    const { sub, exp } = payload;
    if (typeof sub !== 'string' || typeof exp !== 'number') throw new ApiError(401, 'invalid_tsunagi_token', 'The Tsunagi ID token lacks sub or exp.');
    return { sub, exp, authTime: typeof payload.auth_time === 'number' ? payload.auth_time : (payload.iat as number), nonce: undefined, jti: undefined };
  }

  /** Tsunagi's discovery document (cached with the keys). */
  async metadata(): Promise<Record<string, unknown>> {
    await this.keys();
    return this.discovered as Record<string, unknown>;
  }

  /** A JWT access token for this backend's resource indicator (aud = the resource), issued to the LIFF page. */
  async verifyAccessToken(accessToken: string): Promise<VerifiedSignIn> {
    if (!this.resource) throw new ApiError(400, 'access_token_not_accepted', 'This backend accepts ID tokens only (TSUNAGI_RESOURCE is not set).');
    const payload = await this.verify(accessToken, { audience: this.resource, typ: 'at+jwt', requiredClaims: ['sub', 'exp', 'jti', 'client_id', 'auth_time'] }, 'access token');
    // Another client allowed the same resource (say a server with client credentials) is not the LIFF page.
    if (payload.client_id !== this.clientId) throw new ApiError(401, 'invalid_tsunagi_token', 'The access token was issued to another client.');
    return signIn(payload, undefined);
  }

  private async keys() {
    if (this.jwks) return this.jwks;
    const res = await fetch(`${this.issuer}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
    const metadata = res?.ok ? await res.json() as { issuer?: unknown; jwks_uri?: unknown } : undefined;
    if (metadata?.issuer !== this.issuer || typeof metadata.jwks_uri !== 'string') {
      throw new ApiError(502, 'tsunagi_unavailable', "Tsunagi's discovery document could not be read (or names another issuer).");
    }
    this.discovered = metadata as Record<string, unknown>;
    this.jwks = createRemoteJWKSet(new URL(metadata.jwks_uri));
    return this.jwks;
  }

  private async verify(token: string, checks: { audience: string; typ?: string; requiredClaims: string[] }, what: string): Promise<JWTPayload> {
    const jwks = await this.keys();
    try {
      const { payload } = await jwtVerify(token, jwks, { issuer: this.issuer, algorithms: ALGORITHMS, clockTolerance: 5, ...checks });
      return payload;
    } catch (err) {
      throw new ApiError(401, 'invalid_tsunagi_token', `The Tsunagi ${what} was refused: ${describeJoseError(err)}.`);
    }
  }
}

function signIn(payload: JWTPayload, nonce: string | undefined): VerifiedSignIn {
  const { sub, auth_time: authTime, exp, jti } = payload;
  if (typeof sub !== 'string' || typeof authTime !== 'number' || typeof exp !== 'number') {
    throw new ApiError(401, 'invalid_tsunagi_token', 'The Tsunagi token lacks sub, auth_time or exp.');
  }
  return { sub, authTime, nonce, jti, exp };
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'it has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return 'it is meant for another audience';
    if (err.claim === 'iss') return 'it comes from another issuer';
    return `claim ${err.claim} ${err.reason === 'missing' ? 'is missing' : 'is not acceptable'}`;
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed || err instanceof joseErrors.JWKSNoMatchingKey) return 'its signature does not match Tsunagi\'s keys';
  if (err instanceof joseErrors.JWTInvalid || err instanceof joseErrors.JWSInvalid) return 'it is not a well-formed JWT';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'it is signed with an algorithm this backend does not accept';
  if (err instanceof joseErrors.JWKSTimeout) return "Tsunagi's keys could not be fetched in time";
  return 'it could not be verified';
}
