import type { Adapter, AdapterPayload } from 'oidc-provider';
import { errors } from 'oidc-provider';
import { containsNul } from '../../db/text.js';

export type { Adapter, AdapterPayload };

/** Called when a second consume of the same code or refresh token loses the race. */
export type ConsumeConflictHandler = (model: string, grantId: string | undefined) => Promise<never>;

// Models whose artifacts live seconds to hours: in Redis when it is configured.
export const SHORT_LIVED_MODELS = new Set([
  'Session', 'Interaction', 'AuthorizationCode', 'ReplayDetection', 'PushedAuthorizationRequest',
  'DeviceCode', 'BackchannelAuthenticationRequest', 'AccessToken', 'ClientCredentials',
]);

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
