import { errors } from 'oidc-provider';

// Tsunagi's client metadata extensions (RFC 7591 style, snake_case).
export const EXTRA_CLIENT_METADATA = ['first_party', 'require_email', 'allowed_cors_origins', 'allowed_resources', 'upstream_policy'] as const;

/**
 * What Google and Apple may do for a client's sign-ins: `full` (the default) signs in a linked
 * identity, offers to link one whose email matches an account, or signs a new person up;
 * `signin_only` (MIXI M) only signs in an identity already linked from the account page, and takes
 * no profile data from it (src/flows/upstream.ts).
 */
export const UPSTREAM_POLICIES = ['full', 'signin_only'] as const;
export type UpstreamPolicy = (typeof UPSTREAM_POLICIES)[number];

export function isUpstreamPolicy(value: unknown): value is UpstreamPolicy {
  return typeof value === 'string' && (UPSTREAM_POLICIES as readonly string[]).includes(value);
}

/** A client's policy as oidc-provider loaded it; a client without one (or an unreadable one) keeps the default. */
export function upstreamPolicyOf(client: unknown): UpstreamPolicy {
  const value = (client as TsunagiClientMetadata | undefined)?.upstream_policy;
  return isUpstreamPolicy(value) ? value : 'full';
}

/**
 * Scopes of the Admin API (src/http/admin-api.ts). A client gets them only when the operator
 * registers it with `clients add --admin read|write`: dynamic registration refuses them, and a client
 * without a registered `scope` may only ask for the ordinary scopes (src/oidc/configuration.ts).
 */
export const ADMIN_READ_SCOPE = 'admin:read';
export const ADMIN_WRITE_SCOPE = 'admin:write';
export const ADMIN_SCOPES = [ADMIN_READ_SCOPE, ADMIN_WRITE_SCOPE] as const;
export type AdminScope = (typeof ADMIN_SCOPES)[number];

export function adminScopesIn(scope: unknown): AdminScope[] {
  const listed = typeof scope === 'string' ? scope.split(' ') : [];
  return ADMIN_SCOPES.filter((s) => listed.includes(s));
}

export interface TsunagiClientMetadata {
  first_party?: boolean;
  require_email?: boolean;
  allowed_cors_origins?: string[];
  /** Resource indicators (RFC 8707) this client may ask a JWT access token for; the token's aud is the resource. */
  allowed_resources?: string[];
  upstream_policy?: UpstreamPolicy;
}

/** An origin is scheme://host[:port] and nothing else. */
export function isOrigin(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  try {
    const u = new URL(value);
    return (u.protocol === 'https:' || u.protocol === 'http:') && u.origin === value;
  } catch {
    return false;
  }
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * A resource indicator is an absolute https URI without a fragment (RFC 8707 section 2). Outside
 * production, http on loopback is accepted too, so a backend can be developed and tested locally.
 */
export function isResourceIndicator(value: unknown, production: boolean): value is string {
  if (typeof value !== 'string') return false;
  let u: URL;
  try { u = new URL(value); } catch { return false; }
  if (u.hash || value.includes('#') || u.username || u.password) return false;
  if (u.protocol === 'https:') return true;
  return !production && u.protocol === 'http:' && LOOPBACK_HOSTS.has(u.hostname);
}

export function validateExtraClientMetadata(key: string, value: unknown, options: { production?: boolean } = {}): void {
  switch (key) {
    case 'first_party':
    case 'require_email':
      if (value !== undefined && typeof value !== 'boolean') throw new errors.InvalidClientMetadata(`${key} must be a boolean`);
      break;
    case 'allowed_cors_origins':
      if (value === undefined) break;
      if (!Array.isArray(value) || !value.every(isOrigin)) {
        throw new errors.InvalidClientMetadata('allowed_cors_origins must be an array of origins (scheme://host[:port], no path)');
      }
      break;
    case 'allowed_resources':
      if (value === undefined) break;
      if (!Array.isArray(value) || !value.every((v) => isResourceIndicator(v, options.production ?? true))) {
        throw new errors.InvalidClientMetadata(options.production === false
          ? 'allowed_resources must be an array of absolute https URIs without a fragment (http://127.0.0.1 or http://localhost allowed outside production)'
          : 'allowed_resources must be an array of absolute https URIs without a fragment');
      }
      break;
    case 'upstream_policy':
      if (value !== undefined && !isUpstreamPolicy(value)) {
        throw new errors.InvalidClientMetadata(`upstream_policy must be one of ${UPSTREAM_POLICIES.join(', ')}`);
      }
      break;
    default:
  }
}

/** A rule a careful OpenID Provider applies to every client it registers (and `clients lint` to stored ones). */
export type ClientRule = 'public-client-credentials' | 'wildcard-uri' | 'http-redirect-uri' | 'http-uri' | 'reserved-client-id' | 'upstream-policy' | 'admin-scope';

export interface ClientRuleViolation {
  rule: ClientRule;
  /** The OAuth error a registration gets for it (RFC 7591 section 3.2.2). */
  error: 'invalid_client_metadata' | 'invalid_redirect_uri';
  message: string;
}

export interface ClientPolicy {
  production: boolean;
  /**
   * The operator registers this client for the Admin API (`clients add --admin`): it may list admin
   * scopes. Never true for dynamic registration.
   */
  adminApi?: boolean;
  /** Client ids Tsunagi uses itself (the account page's client). */
  reservedClientIds: readonly string[];
}

const REDIRECT_URI_FIELDS = ['redirect_uris', 'post_logout_redirect_uris'] as const;
// URIs Tsunagi fetches, sends a person to, or shows: https only in production.
const HTTPS_URI_FIELDS = ['jwks_uri', 'sector_identifier_uri', 'backchannel_logout_uri', 'logo_uri', 'policy_uri', 'tos_uri', 'client_uri', 'initiate_login_uri'] as const;
const OTHER_URI_FIELDS = ['request_uris', 'allowed_cors_origins', 'allowed_resources'] as const;
// RFC 8252 section 7.3: a native app's http redirect goes to a loopback IP literal (section 8.3: not "localhost").
const LOOPBACK_IP_HOSTS = new Set(['127.0.0.1', '[::1]']);

const stringsOf = (value: unknown): string[] =>
  typeof value === 'string' ? [value] : Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];

/**
 * What a careful IdP refuses in client metadata, beyond what oidc-provider checks itself. An empty
 * list means the client may be registered. Pure: the CLI, dynamic registration and `clients lint`
 * all ask this one function.
 */
export function clientRuleViolations(metadata: Record<string, unknown>, policy: ClientPolicy): ClientRuleViolation[] {
  const found: ClientRuleViolation[] = [];
  const grantTypes = stringsOf(metadata.grant_types);
  if (grantTypes.includes('client_credentials') && metadata.token_endpoint_auth_method === 'none') {
    found.push({
      rule: 'public-client-credentials', error: 'invalid_client_metadata',
      message: 'client_credentials needs an authenticated client (RFC 6749 section 4.4): a client with token_endpoint_auth_method none cannot use it',
    });
  }
  const clientId = metadata.client_id;
  if (typeof clientId === 'string' && policy.reservedClientIds.some((id) => id.toLowerCase() === clientId.toLowerCase())) {
    found.push({ rule: 'reserved-client-id', error: 'invalid_client_metadata', message: `client_id ${clientId} is reserved for Tsunagi's own account page` });
  }
  if (metadata.upstream_policy !== undefined && !isUpstreamPolicy(metadata.upstream_policy)) {
    found.push({ rule: 'upstream-policy', error: 'invalid_client_metadata', message: `upstream_policy must be one of ${UPSTREAM_POLICIES.join(', ')}` });
  }
  found.push(...adminScopeViolations(metadata, grantTypes, policy));
  for (const field of [...REDIRECT_URI_FIELDS, ...HTTPS_URI_FIELDS, ...OTHER_URI_FIELDS]) {
    const wild = stringsOf(metadata[field]).find((uri) => uri.includes('*'));
    if (wild !== undefined) {
      found.push({
        rule: 'wildcard-uri', error: field === 'redirect_uris' ? 'invalid_redirect_uri' : 'invalid_client_metadata',
        message: `${field} must list exact URIs, without wildcards (got ${wild})`,
      });
    }
  }
  if (!policy.production) return found;
  for (const field of REDIRECT_URI_FIELDS) {
    for (const uri of stringsOf(metadata[field])) {
      let url: URL;
      try { url = new URL(uri); } catch { continue; /* oidc-provider reports what is not a URI */ }
      if (url.protocol === 'http:' && !LOOPBACK_IP_HOSTS.has(url.hostname)) {
        found.push({
          rule: 'http-redirect-uri', error: field === 'redirect_uris' ? 'invalid_redirect_uri' : 'invalid_client_metadata',
          message: `${field}: ${uri} uses http; in production only https, or http to a loopback IP literal for native apps (http://127.0.0.1:port, RFC 8252 section 7.3)`,
        });
      }
    }
  }
  for (const field of HTTPS_URI_FIELDS) {
    for (const uri of stringsOf(metadata[field])) {
      let protocol: string;
      try { protocol = new URL(uri).protocol; } catch { continue; }
      if (protocol !== 'https:') {
        found.push({ rule: 'http-uri', error: 'invalid_client_metadata', message: `${field} must be an https URL in production (got ${uri})` });
      }
    }
  }
  return found;
}

/**
 * Admin scopes reach accounts of everyone: only a confidential client the operator registered for
 * that, and one that acts as itself (client credentials only, never on a person's behalf).
 */
function adminScopeViolations(metadata: Record<string, unknown>, grantTypes: string[], policy: ClientPolicy): ClientRuleViolation[] {
  const admin = adminScopesIn(metadata.scope);
  if (admin.length === 0) return [];
  if (!policy.adminApi) {
    return [{
      rule: 'admin-scope', error: 'invalid_client_metadata',
      message: `scope ${admin.join(' ')} is only for Admin API clients the operator registers (clients add --admin read|write)`,
    }];
  }
  if (grantTypes.length !== 1 || grantTypes[0] !== 'client_credentials' || metadata.token_endpoint_auth_method === 'none') {
    return [{
      rule: 'admin-scope', error: 'invalid_client_metadata',
      message: 'an Admin API client uses client credentials only (grant_types ["client_credentials"], an authenticated client, no redirect_uris)',
    }];
  }
  return [];
}

/** Refuses a registration that breaks a rule, with the first violation's error and every message. */
export function assertClientRules(metadata: Record<string, unknown>, policy: ClientPolicy): void {
  const violations = clientRuleViolations(metadata, policy);
  const [first] = violations;
  if (!first) return;
  const message = violations.map((v) => v.message).join('; ');
  if (first.error === 'invalid_client_metadata') throw new errors.InvalidClientMetadata(message);
  // oidc-provider's InvalidRedirectUri has a fixed description (meant for /auth): say what is wrong.
  const err = new errors.InvalidRedirectUri();
  err.error_description = message;
  throw err;
}
