import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import type { UpstreamProviderName } from '../accounts/upstream-identity-store.js';
import { UpstreamError, type UpstreamErrorReason } from './errors.js';

// An OpenID Connect relying-party client for one upstream provider, shared by Google and Apple.
// Only what Tsunagi needs: discovery, the authorization URL, the code exchange and the ID token
// checks. Every failure leaves as an UpstreamError with a reason the routes can show.

/** The part of a discovery document Tsunagi uses, checked when it is read. */
export interface UpstreamMetadata {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  jwks_uri: string;
  revocation_endpoint?: string;
  code_challenge_methods_supported?: string[];
}

export interface TokenResponse {
  idToken: string;
  accessToken: string | undefined;
  refreshToken: string | undefined;
}

export interface OidcUpstreamOptions {
  provider: UpstreamProviderName;
  /** The configured issuer: discovery is read from {issuer}/.well-known/openid-configuration. */
  issuer: string;
  /** `iss` values an ID token may carry (Google's real issuer also signs as "accounts.google.com"). */
  acceptedIssuers: string[];
  clientId: string;
  /** The client secret for this request (Apple's is a JWT made on demand). */
  clientSecret: () => Promise<string>;
  tokenEndpointAuthMethod: 'client_secret_basic' | 'client_secret_post';
  scope: string;
  responseMode?: 'form_post';
  /** Asymmetric algorithms only: never none or HS*, whatever the token says. */
  algorithms: string[];
  /** 'always' sends PKCE; 'when_advertised' only if discovery lists S256 (Apple does not document PKCE). */
  pkce: 'always' | 'when_advertised';
  timeoutMs: number;
  clock?: () => Date;
  discoveryCacheMs?: number;
  /** The shortest time between two key set downloads triggered by an unknown kid. */
  jwksCooldownMs?: number;
  /** How old an ID token may be when it arrives: it was just issued at the token endpoint. */
  maxIdTokenAgeSeconds?: number;
}

export const CLOCK_SKEW_SECONDS = 60;

export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

export function pkceChallenge(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url');
}

export class OidcUpstreamClient {
  private metadata: { value: Promise<UpstreamMetadata>; until: number } | undefined;
  private jwks: { uri: string; keys: ReturnType<typeof createRemoteJWKSet> } | undefined;
  private readonly clock: () => Date;

  constructor(readonly options: OidcUpstreamOptions) {
    this.clock = options.clock ?? (() => new Date());
  }

  get provider(): UpstreamProviderName { return this.options.provider; }

  fail(reason: UpstreamErrorReason, detail: string, cause?: unknown): UpstreamError {
    return new UpstreamError(reason, this.options.provider, detail, cause === undefined ? undefined : { cause });
  }

  /** The discovery document, cached; a failed read is not cached, so the next sign-in tries again. */
  discover(): Promise<UpstreamMetadata> {
    const now = Date.now();
    if (this.metadata && this.metadata.until > now) return this.metadata.value;
    const value = this.readDiscovery();
    this.metadata = { value, until: now + (this.options.discoveryCacheMs ?? 3600_000) };
    value.catch(() => { if (this.metadata?.value === value) this.metadata = undefined; });
    return value;
  }

  private async readDiscovery(): Promise<UpstreamMetadata> {
    const url = `${this.options.issuer}/.well-known/openid-configuration`;
    const { status, body } = await this.request(url, { method: 'GET' });
    if (status !== 200) throw this.fail('unavailable', `discovery answered ${status}`);
    const doc = parseJsonObject(body);
    if (!doc) throw this.fail('unavailable', 'discovery is not a JSON object');
    // OpenID Connect Discovery 1.0 §4.3: the document must name the issuer it was fetched for.
    if (doc.issuer !== this.options.issuer) throw this.fail('unavailable', `discovery names issuer ${String(doc.issuer)}`);
    const endpoint = (name: string, required: boolean): string | undefined => {
      const v = doc[name];
      if (v === undefined && !required) return undefined;
      if (typeof v !== 'string' || !/^https?:\/\//.test(v)) throw this.fail('unavailable', `discovery has no usable ${name}`);
      return v;
    };
    const methods = doc.code_challenge_methods_supported;
    return {
      issuer: this.options.issuer,
      authorization_endpoint: endpoint('authorization_endpoint', true) as string,
      token_endpoint: endpoint('token_endpoint', true) as string,
      jwks_uri: endpoint('jwks_uri', true) as string,
      revocation_endpoint: endpoint('revocation_endpoint', false),
      code_challenge_methods_supported: Array.isArray(methods) ? methods.filter((m): m is string => typeof m === 'string') : undefined,
    };
  }

  async usesPkce(): Promise<boolean> {
    if (this.options.pkce === 'always') return true;
    return (await this.discover()).code_challenge_methods_supported?.includes('S256') ?? false;
  }

  async authorizationUrl(p: {
    redirectUri: string; state: string; nonce: string; codeVerifier: string; loginHint?: string | undefined; prompt?: string | undefined;
  }): Promise<URL> {
    const metadata = await this.discover();
    const url = new URL(metadata.authorization_endpoint);
    const params: Record<string, string> = {
      client_id: this.options.clientId,
      redirect_uri: p.redirectUri,
      response_type: 'code',
      scope: this.options.scope,
      state: p.state,
      nonce: p.nonce,
    };
    if (this.options.responseMode) params.response_mode = this.options.responseMode;
    if (await this.usesPkce()) {
      params.code_challenge = pkceChallenge(p.codeVerifier);
      params.code_challenge_method = 'S256';
    }
    if (p.loginHint) params.login_hint = p.loginHint;
    if (p.prompt) params.prompt = p.prompt;
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    return url;
  }

  async exchangeCode(p: { code: string; redirectUri: string; codeVerifier: string }): Promise<TokenResponse> {
    const metadata = await this.discover();
    const form: Record<string, string> = { grant_type: 'authorization_code', code: p.code, redirect_uri: p.redirectUri };
    if (await this.usesPkce()) form.code_verifier = p.codeVerifier;
    const body = await this.postAuthenticated(metadata.token_endpoint, form);
    const idToken = body.id_token;
    if (typeof idToken !== 'string' || idToken === '') throw this.fail('token_exchange_failed', 'the token response has no id_token');
    const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
    return { idToken, accessToken: str(body.access_token), refreshToken: str(body.refresh_token) };
  }

  /** POSTs a form with client authentication; a 4xx is the provider refusing, a 5xx it being down. */
  async postAuthenticated(url: string, form: Record<string, string>): Promise<Record<string, unknown>> {
    const secret = await this.options.clientSecret();
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    const fields = { ...form };
    if (this.options.tokenEndpointAuthMethod === 'client_secret_basic') {
      // RFC 6749 §2.3.1: both parts form-urlencoded before base64.
      const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
      headers.authorization = `Basic ${Buffer.from(`${enc(this.options.clientId)}:${enc(secret)}`).toString('base64')}`;
    } else {
      fields.client_id = this.options.clientId;
      fields.client_secret = secret;
    }
    const { status, body } = await this.request(url, { method: 'POST', headers, body: new URLSearchParams(fields).toString() });
    if (status >= 500) throw this.fail('unavailable', `${new URL(url).pathname} answered ${status}`);
    const json = body === '' ? {} : parseJsonObject(body);
    if (status >= 400) {
      const error = json && typeof json.error === 'string' ? json.error : `status ${status}`;
      throw this.fail('token_exchange_failed', `${new URL(url).pathname} refused: ${error}`);
    }
    if (!json) throw this.fail('unavailable', `${new URL(url).pathname} did not answer JSON`);
    return json;
  }

  /**
   * Checks signature (keys from jwks_uri, downloaded again once on an unknown kid), alg, iss, aud,
   * azp, exp/iat with 60 s skew, age, and the nonce. `nonceNotSupported` lets Apple accept a token
   * without nonce when it says the platform cannot carry one.
   */
  async verifyIdToken(idToken: string, expectedNonce: string, nonceNotSupported: (claims: JWTPayload) => boolean = () => false): Promise<JWTPayload> {
    const keys = await this.keySet();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(idToken, keys, {
        algorithms: this.options.algorithms,
        issuer: this.options.acceptedIssuers,
        audience: this.options.clientId,
        clockTolerance: CLOCK_SKEW_SECONDS,
        maxTokenAge: this.options.maxIdTokenAgeSeconds ?? 600,
        currentDate: this.clock(),
        requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat'],
      }));
    } catch (err) {
      throw this.failFromJose(err);
    }
    if (typeof payload.sub !== 'string' || payload.sub === '') throw this.fail('invalid_id_token', 'no sub');
    // OIDC Core §3.1.3.7: azp, when present, must be this client.
    if (payload.azp !== undefined && payload.azp !== this.options.clientId) throw this.fail('wrong_audience', 'azp is another client');
    if (Array.isArray(payload.aud) && payload.aud.length > 1 && payload.azp === undefined) throw this.fail('wrong_audience', 'several audiences and no azp');
    const nonce = payload.nonce;
    if (nonce === undefined) {
      if (!nonceNotSupported(payload)) throw this.fail('wrong_nonce', 'no nonce in the ID token');
    } else if (typeof nonce !== 'string' || !sameString(nonce, expectedNonce)) {
      throw this.fail('wrong_nonce', 'the nonce is not the one this sign-in sent');
    }
    return payload;
  }

  /** The provider's signing keys (jwks_uri from discovery), cached, downloaded again once on an unknown kid. */
  private async keySet(): Promise<ReturnType<typeof createRemoteJWKSet>> {
    const metadata = await this.discover();
    if (!this.jwks || this.jwks.uri !== metadata.jwks_uri) {
      this.jwks = {
        uri: metadata.jwks_uri,
        keys: createRemoteJWKSet(new URL(metadata.jwks_uri), {
          timeoutDuration: this.options.timeoutMs,
          cooldownDuration: this.options.jwksCooldownMs ?? 30_000,
          cacheMaxAge: 600_000,
        }),
      };
    }
    return this.jwks.keys;
  }

  /**
   * Checks a JWT the provider signed that is not an ID token (Apple's server-to-server
   * notifications): same keys, algorithms, issuers and audience; iat required, not in the future
   * (60 s skew) and at most `maxAgeSeconds` old; no nonce, since no request of ours asked for it.
   */
  async verifySignedJwt(jwt: string, maxAgeSeconds: number): Promise<JWTPayload> {
    const keys = await this.keySet();
    try {
      const { payload } = await jwtVerify(jwt, keys, {
        algorithms: this.options.algorithms,
        issuer: this.options.acceptedIssuers,
        audience: this.options.clientId,
        clockTolerance: CLOCK_SKEW_SECONDS,
        maxTokenAge: maxAgeSeconds,
        currentDate: this.clock(),
        requiredClaims: ['iss', 'aud', 'iat'],
      });
      return payload;
    } catch (err) {
      throw this.failFromJose(err);
    }
  }

  private failFromJose(err: unknown): UpstreamError {
    return upstreamErrorFromJose(this.options.provider, err);
  }

  /** One HTTP request with the deadline; network failures become 'unavailable', the deadline 'timeout'. */
  async request(url: string, init: { method: string; headers?: Record<string, string>; body?: string }): Promise<{ status: number; body: string }> {
    const signal = AbortSignal.timeout(this.options.timeoutMs);
    try {
      const res = await fetch(url, { ...init, redirect: 'error', signal });
      return { status: res.status, body: await res.text() };
    } catch (err) {
      if (signal.aborted || (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError'))) {
        throw this.fail('timeout', `${new URL(url).pathname} did not answer within ${this.options.timeoutMs} ms`, err);
      }
      throw this.fail('unavailable', `${new URL(url).pathname}: ${err instanceof Error ? err.message : String(err)}`, err);
    }
  }
}

/** What a jose failure (a JWT check, a key set download) means for an upstream provider. */
export function upstreamErrorFromJose(provider: UpstreamProviderName, err: unknown): UpstreamError {
  const fail = (reason: UpstreamErrorReason, detail: string, cause?: unknown) => new UpstreamError(reason, provider, detail, cause === undefined ? undefined : { cause });
  if (err instanceof UpstreamError) return err;
  if (err instanceof joseErrors.JWTExpired) return fail('expired', 'the ID token has expired', err);
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return fail('wrong_audience', 'the ID token is for another client', err);
    if (err.claim === 'iss') return fail('wrong_issuer', 'the ID token is from another issuer', err);
    return fail('invalid_id_token', `claim ${err.claim}: ${err.message}`, err);
  }
  if (err instanceof joseErrors.JWKSTimeout) return fail('timeout', 'the key set did not arrive in time', err);
  if (err instanceof joseErrors.JWSSignatureVerificationFailed || err instanceof joseErrors.JOSEAlgNotAllowed
    || err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys || err instanceof joseErrors.JOSENotSupported) {
    return fail('bad_signature', err.message, err);
  }
  if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) return fail('invalid_id_token', err.message, err);
  if (err instanceof joseErrors.JWKSInvalid || err instanceof joseErrors.JWKInvalid) return fail('unavailable', 'the key set is unusable', err);
  if (err instanceof joseErrors.JOSEError) return fail('unavailable', `the key set could not be read: ${err.message}`, err);
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return fail('timeout', 'the key set did not arrive in time', err);
  return fail('unavailable', `the key set could not be read: ${err instanceof Error ? err.message : String(err)}`, err);
}

export function parseJsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function sameString(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** `true`/`"true"` -> true; anything else -> false (Apple sends booleans as strings). */
export function claimBoolean(v: unknown): boolean {
  return v === true || v === 'true';
}

export function claimString(v: unknown): string | undefined {
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined;
}
