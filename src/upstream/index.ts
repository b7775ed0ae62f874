/**
 * Google and Apple as upstream OpenID providers: the layer under the federation routes.
 *
 *   const upstream = new UpstreamProviders({ config: config.upstream, logins: new UpstreamLoginStore(pool) });
 *   upstream.enabledProviders()                       // ['google', 'apple'] — only the fully configured ones
 *
 *   // 1. Send the person upstream. Stores a pending login (state hash, nonce, PKCE verifier) for 10 min,
 *   //    bound to this browser: a random value goes into a cookie (through `browser`), its hash into the row.
 *   const { authorizationUrl } = await upstream.begin({
 *     provider: 'google', interactionUid, redirectUri: `${issuer}/upstream/google/callback`, browser,
 *     purpose: 'login',                               // or 'link_proof' (expectedAccountId + expectedSubject),
 *                                                     // or 'account_link' (expectedAccountId; interactionUid = 'account:<session uid>')
 *     loginHint, prompt,                              // optional; Google only (Apple has neither)
 *   });
 *   ctx.redirect(authorizationUrl);
 *
 *   // 2. The callback. Google's query (GET) goes straight to complete(). Apple's form body arrives by a
 *   //    cross-site POST, which carries no SameSite=Lax cookie: it is only held, and the browser is
 *   //    sent (303) to a same-site GET (/upstream/apple/answer) that takes it back by its one-time reference:
 *   const { reference } = await upstream.holdFormPostAnswer({ provider: 'apple', params: ctx.request.body });
 *   const params = await upstream.takeHeldAnswer({ provider: 'apple', reference });   // in the GET
 *   const { pending, identity } = await upstream.complete({ provider: 'apple', params, redirectUri, browser });
 *   // complete() consumes the pending login only with this browser's binding cookie; from any other
 *   // browser it throws 'other_browser' and the attempt stays usable by its own browser.
 *   // pending: the consumed PendingUpstreamLogin (single use). The caller still checks that
 *   //   pending.interactionUid is the interaction (or account session) in the person's cookie, and for
 *   //   'link_proof' that identity.subject === pending.expectedSubject.
 *   // identity: UpstreamIdentityClaims — key (issuer, subject); email, emailVerified,
 *   //   emailTrustedForRegistration, isPrivateRelay, name, refreshToken (Apple).
 *
 *   // 3. Apple unlink / account deletion: revoke the stored refresh token.
 *   await upstream.revokeAppleToken(refreshToken);
 *
 * Every failure is an UpstreamError { reason, provider, pending? } (see UPSTREAM_ERROR_REASONS); when
 * the callback got as far as consuming the pending login, `pending` says which interaction to go
 * back to. Nothing is linked or created here: storage of identities is UpstreamIdentityStore.
 */
import type { JWTPayload } from 'jose';
import type { UpstreamProviderName } from '../accounts/upstream-identity-store.js';
import type { HeldAnswerParams, PendingUpstreamLogin, RefusedState, UpstreamLoginPurpose, UpstreamLoginStore } from '../accounts/upstream-login-store.js';
import type { UpstreamConfig } from '../config.js';
import { AppleUpstream, type AppleClientSecretTiming } from './apple.js';
import { browserBindingCookieName, type BrowserCookies } from './browser-binding.js';
import { UpstreamError } from './errors.js';
import { GoogleUpstream } from './google.js';
import { GoogleRiscVerifier, type GoogleSecurityEvent } from './google-risc.js';
import type { UpstreamIdentityClaims } from './identity-claims.js';
import { randomToken } from './oidc-client.js';
import type { CallbackParams, UpstreamProviderClient } from './provider-client.js';

export { AppleUpstream, AppleClientSecret, isAppleRelayAddress, parseAppleUser } from './apple.js';
export { UpstreamError, UPSTREAM_ERROR_REASONS, type UpstreamErrorReason } from './errors.js';
export { GoogleUpstream, REAL_GOOGLE_ISSUER } from './google.js';
export { GOOGLE_RISC_EVENT_TYPES, SetRefused, type GoogleRiscEventType, type GoogleSecurityEvent, type SetErrorCode } from './google-risc.js';
export type { UpstreamIdentityClaims } from './identity-claims.js';
export type { CallbackParams, UpstreamProviderClient } from './provider-client.js';
export { browserBindingCookieName, type BrowserCookies } from './browser-binding.js';

export const UPSTREAM_PROVIDERS: readonly UpstreamProviderName[] = ['google', 'apple'];

export function isUpstreamProviderName(v: unknown): v is UpstreamProviderName {
  return v === 'google' || v === 'apple';
}

/** A pending upstream login lives this long: enough to pick an account and consent, not more. */
export const UPSTREAM_LOGIN_TTL_SECONDS = 600;
/** A form_post answer waits this long for the same-site GET its POST redirects to (at once, in practice). */
export const HELD_ANSWER_TTL_SECONDS = 120;

export interface BeginUpstreamLogin {
  provider: UpstreamProviderName;
  interactionUid: string;
  redirectUri: string;
  purpose: UpstreamLoginPurpose;
  /** Google: the account to preselect (an email, or the stored `sub` when proving a linked identity). */
  loginHint?: string | undefined;
  /** Google: 'select_account' or 'consent'. */
  prompt?: 'select_account' | 'consent' | undefined;
  expectedAccountId?: string | undefined;
  expectedSubject?: string | undefined;
  /** The browser that begins the attempt: it gets the binding cookie the callback must bring back. */
  browser: BrowserCookies;
}

export interface CompleteUpstreamLogin {
  provider: UpstreamProviderName;
  /** The callback's query or form body as the router parsed it; repeated parameters are refused. */
  params: Readonly<Record<string, unknown>>;
  /** When given, must be the redirect URI the login began with. */
  redirectUri?: string | undefined;
  /** The browser the answer arrived in: only the one that began the attempt can complete it. */
  browser: BrowserCookies;
}

export interface UpstreamProvidersOptions {
  config: UpstreamConfig;
  logins: UpstreamLoginStore;
  clock?: () => Date;
  /** Tests: the shortest time between key set downloads triggered by an unknown kid (default 30 s). */
  jwksCooldownMs?: number;
  appleClientSecretTiming?: AppleClientSecretTiming;
}

export class UpstreamProviders {
  private readonly clients = new Map<UpstreamProviderName, UpstreamProviderClient>();
  private readonly clock: () => Date;
  private readonly googleRisc: GoogleRiscVerifier | undefined;

  constructor(private readonly options: UpstreamProvidersOptions) {
    this.clock = options.clock ?? (() => new Date());
    const common = { timeoutMs: options.config.timeoutMs, clock: this.clock, jwksCooldownMs: options.jwksCooldownMs };
    if (options.config.google) {
      const google = new GoogleUpstream(options.config.google, common);
      this.clients.set('google', google);
      this.googleRisc = new GoogleRiscVerifier(options.config.google, google.oidc, common);
    }
    if (options.config.apple) {
      this.clients.set('apple', new AppleUpstream(options.config.apple, { ...common, clientSecretTiming: options.appleClientSecretTiming }));
    }
  }

  enabledProviders(): UpstreamProviderName[] {
    return UPSTREAM_PROVIDERS.filter((p) => this.clients.has(p));
  }

  isEnabled(provider: UpstreamProviderName): boolean {
    return this.clients.has(provider);
  }

  get(provider: UpstreamProviderName): UpstreamProviderClient {
    const client = this.clients.get(provider);
    if (!client) throw new UpstreamError('not_configured', provider, 'this provider is not configured');
    return client;
  }

  /** The issuer identities of this provider are stored under (to look a linked identity up). */
  issuerOf(provider: UpstreamProviderName): string {
    return this.get(provider).issuer;
  }

  async begin(request: BeginUpstreamLogin): Promise<{ authorizationUrl: string; expiresAt: Date }> {
    const client = this.get(request.provider);
    if (request.purpose === 'link_proof' && (!request.expectedAccountId || !request.expectedSubject)) {
      throw new Error('a link proof needs the account and the subject of its linked identity');
    }
    if (request.purpose === 'account_link' && !request.expectedAccountId) throw new Error('linking from the account page needs the account');
    const state = randomToken();
    const browserBinding = randomToken();
    const nonce = randomToken();
    const codeVerifier = randomToken(48);
    // Discovery first: if the provider is down, no pending login is left behind.
    const url = await client.authorizationUrl({
      redirectUri: request.redirectUri, state, nonce, codeVerifier, loginHint: request.loginHint, prompt: request.prompt,
    });
    const now = this.clock();
    const expiresAt = new Date(now.getTime() + UPSTREAM_LOGIN_TTL_SECONDS * 1000);
    await this.options.logins.create(state, browserBinding, {
      interactionUid: request.interactionUid,
      provider: request.provider,
      nonce,
      codeVerifier,
      redirectUri: request.redirectUri,
      purpose: request.purpose,
      expectedAccountId: request.expectedAccountId ?? null,
      expectedSubject: request.expectedSubject ?? null,
      expiresAt,
    }, now);
    request.browser.set(browserBindingCookieName(state), browserBinding, UPSTREAM_LOGIN_TTL_SECONDS);
    return { authorizationUrl: url.href, expiresAt };
  }

  /**
   * An answer that came as a cross-site form POST (Apple's form_post): the browser's SameSite=Lax
   * cookies are not on that request, so nothing is decided or consumed here. The answer is held under
   * a fresh reference, which only this browser learns (in the redirect to the same-site GET that
   * takes it back); that GET carries the cookie and calls complete(). An answer for no live pending
   * login of this provider is refused at once.
   */
  async holdFormPostAnswer(request: { provider: UpstreamProviderName; params: Readonly<Record<string, unknown>> }): Promise<{ reference: string }> {
    this.get(request.provider);
    const params = parseCallbackParams(request.params);
    if (!params) throw new UpstreamError('bad_state', request.provider, 'the callback repeats a parameter or is not a flat form');
    if (!params.state) {
      throw new UpstreamError(params.error ? errorReason(params.error) : 'bad_state', request.provider, params.error ?? 'the callback has no state');
    }
    const reference = randomToken();
    const now = this.clock();
    const held = await this.options.logins.holdAnswer(
      request.provider, params.state, params as HeldAnswerParams, reference, new Date(now.getTime() + HELD_ANSWER_TTL_SECONDS * 1000), now,
    );
    if (!held.ok) throw refusedStateError(held, request.provider);
    return { reference };
  }

  /** The answer held by holdFormPostAnswer(), once; an unknown, used or expired reference is 'bad_state'. */
  async takeHeldAnswer(request: { provider: UpstreamProviderName; reference: unknown }): Promise<HeldAnswerParams> {
    this.get(request.provider);
    const params = typeof request.reference === 'string' && request.reference.length <= 128
      ? await this.options.logins.takeAnswer(request.provider, request.reference, this.clock())
      : undefined;
    if (!params) throw new UpstreamError('bad_state', request.provider, 'no held answer for this reference');
    return params;
  }

  async complete(request: CompleteUpstreamLogin): Promise<{ pending: PendingUpstreamLogin; identity: UpstreamIdentityClaims }> {
    const client = this.get(request.provider);
    const params = parseCallbackParams(request.params);
    if (!params) throw new UpstreamError('bad_state', request.provider, 'the callback repeats a parameter or is not a flat form');
    if (!params.state) {
      throw new UpstreamError(params.error ? errorReason(params.error) : 'bad_state', request.provider, params.error ?? 'the callback has no state');
    }
    // Consumed before anything else, and only with the binding cookie of the browser that began it:
    // from any other browser nothing is consumed (that browser can still finish), and whatever
    // happens next, this state never works twice.
    const cookie = browserBindingCookieName(params.state);
    const outcome = await this.options.logins.consume(params.state, request.browser.get(cookie), this.clock());
    if (!outcome.ok) throw refusedStateError(outcome, request.provider);
    request.browser.clear(cookie);
    const pending = outcome.login;
    try {
      if (pending.provider !== request.provider) throw new UpstreamError('bad_state', request.provider, `the state belongs to ${pending.provider}`);
      if (request.redirectUri !== undefined && request.redirectUri !== pending.redirectUri) {
        throw new UpstreamError('bad_state', request.provider, 'the callback arrived at another redirect URI');
      }
      if (params.error) throw new UpstreamError(errorReason(params.error), request.provider, `the provider answered ${params.error}`);
      const identity = await client.identityFromCallback(params, pending);
      return { pending, identity };
    } catch (err) {
      if (err instanceof UpstreamError) err.pending ??= pending;
      throw err;
    }
  }

  /** Checks an Apple server-to-server notification's JWS (signature, iss, aud, iat); UpstreamError otherwise. */
  async verifyAppleNotification(jws: string): Promise<JWTPayload> {
    const apple = this.get('apple');
    if (!(apple instanceof AppleUpstream)) throw new UpstreamError('not_configured', 'apple', 'no Apple client');
    return apple.verifyNotification(jws);
  }

  /** Checks a Google RISC Security Event Token; SetRefused, or UpstreamError when Google's keys cannot be read. */
  async verifyGoogleSecurityEvent(set: string): Promise<GoogleSecurityEvent> {
    if (!this.googleRisc) throw new UpstreamError('not_configured', 'google', 'Google is not configured');
    return this.googleRisc.verify(set);
  }

  /** Revokes an Apple refresh token (unlink, account deletion). */
  async revokeAppleToken(refreshToken: string): Promise<void> {
    const apple = this.get('apple');
    if (!(apple instanceof AppleUpstream)) throw new UpstreamError('not_configured', 'apple', 'no Apple client');
    await apple.revokeToken(refreshToken);
  }
}

function refusedStateError(refused: RefusedState, provider: UpstreamProviderName): UpstreamError {
  const reason = refused.why === 'replayed' ? 'replayed' : refused.why === 'expired' ? 'state_expired' : refused.why === 'other_browser' ? 'other_browser' : 'bad_state';
  const err = new UpstreamError(reason, provider, `state ${refused.why}`);
  if (refused.why === 'other_browser') err.purpose = refused.purpose;
  return err;
}

// Apple says the person cancelled with user_cancelled_authorize; OAuth providers with access_denied.
function errorReason(error: string): 'access_denied' | 'upstream_error' {
  return error === 'access_denied' || error === 'user_cancelled_authorize' ? 'access_denied' : 'upstream_error';
}

const CALLBACK_FIELDS = ['code', 'state', 'error', 'user'] as const;

/** Only the fields Tsunagi reads, each a single string of sane length; anything else in the callback is ignored. */
export function parseCallbackParams(raw: Readonly<Record<string, unknown>>): CallbackParams | undefined {
  const params: CallbackParams = {};
  for (const field of CALLBACK_FIELDS) {
    const v = raw[field];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v.length > 8192) return undefined;
    if (v !== '') params[field] = v;
  }
  return params;
}
