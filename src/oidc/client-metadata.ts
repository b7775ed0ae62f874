import { errors } from 'oidc-provider';

// Tsunagi's client metadata extensions (RFC 7591 style, snake_case).
export const EXTRA_CLIENT_METADATA = ['first_party', 'require_email', 'allowed_cors_origins', 'allowed_resources'] as const;

export interface TsunagiClientMetadata {
  first_party?: boolean;
  require_email?: boolean;
  allowed_cors_origins?: string[];
  /** Resource indicators (RFC 8707) this client may ask a JWT access token for; the token's aud is the resource. */
  allowed_resources?: string[];
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
    default:
  }
}
