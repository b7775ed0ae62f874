import type { Adapter, AdapterPayload } from 'oidc-provider';

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

export function expiresAtFrom(expiresIn: number | undefined): Date | null {
  return expiresIn ? new Date(Date.now() + expiresIn * 1000) : null;
}
