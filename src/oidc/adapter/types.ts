import type { Adapter, AdapterPayload } from 'oidc-provider';

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
