// What the benchmark sends: the clients both servers get, and one fixed request per scenario. The SSO
// round trip is a loop of two requests (bench/load.ts and bench/round-trips.ts).

export interface BenchClient { client_id: string; client_secret: string }

export interface BenchClients {
  /** client_credentials only. */
  cc: BenchClient;
  /** first-party, authorization_code + refresh_token, RS256 ID tokens. */
  rs256: BenchClient;
  /** the same with ES256 ID tokens. */
  es256: BenchClient;
}

export const REDIRECT_URI = 'http://127.0.0.1:9/callback';
/** The resource server the client-credentials client may ask JWT access tokens for (RFC 8707). */
export const RESOURCE = 'https://api.example.com/';
export const CLIENT_ID_PREFIX = 'bench-';

/** RFC 7591 metadata for the three clients, identical for Tsunagi and the bare provider. */
export function clientMetadata(clients: BenchClients): Array<Record<string, unknown>> {
  const user = (c: BenchClient, alg: string) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    client_name: `bench ${alg}`,
    redirect_uris: [REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: alg,
    first_party: true,
  });
  return [
    {
      client_id: clients.cc.client_id,
      client_secret: clients.cc.client_secret,
      client_name: 'bench client credentials',
      redirect_uris: [],
      grant_types: ['client_credentials'],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      allowed_resources: [RESOURCE],
    },
    user(clients.rs256, 'RS256'),
    user(clients.es256, 'ES256'),
  ];
}

/** What one server handed out during set-up, used by the scenarios. */
export interface Target {
  name: 'tsunagi' | 'bare';
  issuer: string;
  clients: BenchClients;
  refreshTokens: { rs256: string; es256: string };
  /** An access token of the RS256 client (scope openid email offline_access). */
  accessToken: string;
  /** The browser's cookies after signing in: a live session. */
  cookie: string;
}

export interface HttpScenario {
  id: string;
  title: string;
  tokenEndpoint: boolean;
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  body?: string;
}

export const SSO_SCENARIO = { id: 'sso', title: 'SSO round trip (authorize with session → code → token, RS256)', tokenEndpoint: false };
export const SSO_SCOPE = 'openid email';

export function basicAuth(c: BenchClient): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(c.client_id)}:${encodeURIComponent(c.client_secret)}`).toString('base64')}`;
}

const form = (c: BenchClient) => ({ authorization: basicAuth(c), 'content-type': 'application/x-www-form-urlencoded' });

export function httpScenarios(t: Target): HttpScenario[] {
  return [
    { id: 'discovery', title: 'discovery', tokenEndpoint: false, method: 'GET', path: '/.well-known/openid-configuration', headers: {} },
    { id: 'jwks', title: 'JWKS', tokenEndpoint: false, method: 'GET', path: '/jwks', headers: {} },
    {
      id: 'client-credentials', title: 'client credentials (opaque)', tokenEndpoint: true, method: 'POST', path: '/token',
      headers: form(t.clients.cc), body: 'grant_type=client_credentials',
    },
    {
      id: 'client-credentials-jwt', title: 'client credentials (JWT access token for a resource, RS256)', tokenEndpoint: true, method: 'POST', path: '/token',
      headers: form(t.clients.cc), body: new URLSearchParams({ grant_type: 'client_credentials', resource: RESOURCE }).toString(),
    },
    {
      id: 'refresh-rs256', title: 'refresh token + ID token (RS256)', tokenEndpoint: true, method: 'POST', path: '/token',
      headers: form(t.clients.rs256), body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: t.refreshTokens.rs256 }).toString(),
    },
    {
      id: 'refresh-es256', title: 'refresh token + ID token (ES256)', tokenEndpoint: true, method: 'POST', path: '/token',
      headers: form(t.clients.es256), body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: t.refreshTokens.es256 }).toString(),
    },
    {
      id: 'introspection', title: 'introspection (user access token)', tokenEndpoint: false, method: 'POST', path: '/token/introspection',
      headers: form(t.clients.rs256), body: new URLSearchParams({ token: t.accessToken }).toString(),
    },
    {
      id: 'userinfo', title: 'userinfo', tokenEndpoint: false, method: 'GET', path: '/me',
      headers: { authorization: `Bearer ${t.accessToken}` },
    },
  ];
}

/** Whole sign-ins through Tsunagi's pages (bench/load.ts); the bare provider has no pages to compare with. */
export const SIGN_IN_SCENARIOS = [
  { id: 'email-signin', title: 'email-code sign-in (existing account, full flow + token)', tokenEndpoint: false },
  { id: 'google-signin', title: 'Google sign-in via the emulator (linked account, full flow + token)', tokenEndpoint: false },
];

export const SCENARIO_ORDER = [
  'discovery', 'jwks', 'client-credentials', 'client-credentials-jwt', 'refresh-rs256', 'refresh-es256', 'introspection', 'userinfo', 'sso',
  'email-signin', 'google-signin',
];
