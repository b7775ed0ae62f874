/** The account page is itself a first-party public client of Tsunagi (like Keycloak's account console). */
export const ACCOUNT_APP_CLIENT_ID = 'tsunagi-account';

export function accountAppClient(issuer: string) {
  return {
    client_id: ACCOUNT_APP_CLIENT_ID,
    client_name: 'Tsunagi account',
    redirect_uris: [`${issuer}/account/callback`],
    token_endpoint_auth_method: 'none' as const,
    grant_types: ['authorization_code'],
    response_types: ['code' as const],
    first_party: true,
  };
}
