import type { Adapter, AdapterPayload } from 'oidc-provider';
import { errors } from 'oidc-provider';
import { containsNul } from '../../failures/malformed-input.js';

export type { Adapter, AdapterPayload };

/** Called when a second consume of the same code or refresh token loses the race. */
export type ConsumeConflictHandler = (model: string, grantId: string | undefined) => Promise<never>;

// Models whose loss costs a person at most one retried step (a sign-in started again, a code asked
// for again, an access token refreshed): in Redis when it is configured. Whatever a lost copy would
// sign someone out or break a relying party with (Session, Grant, RefreshToken) stays in Postgres,
// so a Redis restart or flush ends no session and no refresh token (README: "What survives a Redis
// restart"). Sessions are not cached in Redis either: a session is read by primary key or by its
// indexed uid, one round trip in Postgres as in Redis, and a cache would have to be kept from
// serving a session that logout has destroyed.
export const LOSABLE_MODELS = new Set([
  'Interaction', 'AuthorizationCode', 'ReplayDetection', 'PushedAuthorizationRequest',
  'DeviceCode', 'BackchannelAuthenticationRequest', 'AccessToken', 'ClientCredentials',
]);

/**
 * Artifacts whose expiry oidc-provider (or Tsunagi) answers differently from "unknown": a polled
 * device code (or CIBA request) past its lifetime gets `expired_token` (RFC 8628 section 3.5), an
 * expired code or refresh token `invalid_grant` naming the expiry, and an expired sign-in
 * (Interaction) a "this sign-in took too long" page. oidc-provider checks `exp` itself on every
 * find, so returning an expired artifact grants nothing; the stores keep these findable for
 * EXPIRED_ARTIFACT_GRACE_SECONDS past their expiry (Redis: a longer TTL; Postgres: rows found
 * until then and swept after), and forget them after that.
 */
export const KEPT_PAST_EXPIRY_MODELS: ReadonlySet<string> = new Set([
  'DeviceCode', 'BackchannelAuthenticationRequest', 'AuthorizationCode', 'RefreshToken', 'Interaction',
]);
export const EXPIRED_ARTIFACT_GRACE_SECONDS = 3600;

/** Seconds a model's artifacts stay findable past their expiry. */
export function graceSecondsOf(model: string, graceSeconds = EXPIRED_ARTIFACT_GRACE_SECONDS): number {
  return KEPT_PAST_EXPIRY_MODELS.has(model) ? graceSeconds : 0;
}

export function expiresAtFrom(expiresIn: number | undefined): Date | null {
  return expiresIn ? new Date(Date.now() + expiresIn * 1000) : null;
}

/**
 * An artifact carrying a NUL came from a request parameter (a state, a nonce, a login_hint...):
 * refused as the invalid request it is, the same with or without Redis, instead of failing in Postgres.
 */
export function refuseUnstorable(id: string, payload: AdapterPayload): void {
  if (id.includes('\0') || containsNul(payload)) throw new errors.InvalidRequest('a request parameter contains a NUL character');
}
