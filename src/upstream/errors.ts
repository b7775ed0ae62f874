import type { UpstreamProviderName } from '../accounts/upstream-identity-store.js';
import type { PendingUpstreamLogin, UpstreamLoginPurpose } from '../accounts/upstream-login-store.js';

/** Every way a sign-in at Google or Apple can fail; the routes turn each into a readable page. */
export const UPSTREAM_ERROR_REASONS = [
  'not_configured', // the provider is not turned on
  'access_denied', // the person cancelled at the provider
  'upstream_error', // the provider answered the callback with another error, or without a code
  'timeout', // the provider did not answer in UPSTREAM_TIMEOUT_MS
  'unavailable', // network error, 5xx, or an unusable discovery document / key set
  'bad_state', // callback without a state, with an unknown one, or for another provider
  'replayed', // the state was already used (a second submit or a replayed callback)
  'other_browser', // the answer came back in a browser that did not begin the attempt (a forwarded authorization URL)
  'state_expired', // the person took longer than the pending login lives
  'token_exchange_failed', // the token endpoint refused the code (4xx)
  'invalid_id_token', // malformed, missing claims, wrong azp, issued in the future or too long ago
  'wrong_issuer',
  'wrong_audience',
  'wrong_nonce',
  'expired',
  'bad_signature', // signature fails, unknown key even after refreshing the key set, or an alg not allowed (none, HS*)
  'revoke_failed', // Apple refused to revoke a token (4xx)
] as const;

export type UpstreamErrorReason = (typeof UPSTREAM_ERROR_REASONS)[number];

export class UpstreamError extends Error {
  /**
   * The pending login this callback consumed, when it got that far: it names the interaction (and
   * purpose) to return to with an error page. The pending login is used up either way.
   */
  pending: PendingUpstreamLogin | undefined;
  /**
   * 'other_browser' only: what the attempt was for (login, link proof, account-page link), to say
   * where this browser can start again. Nothing of the pending login itself is given out.
   */
  purpose: UpstreamLoginPurpose | undefined;

  constructor(
    readonly reason: UpstreamErrorReason,
    readonly provider: UpstreamProviderName,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${provider}: ${reason}: ${detail}`, options);
    this.name = 'UpstreamError';
  }
}
