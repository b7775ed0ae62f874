import { errors } from 'oidc-provider';

// Tsunagi's client metadata extensions (RFC 7591 style, snake_case).
export const EXTRA_CLIENT_METADATA = ['first_party', 'require_email', 'allowed_cors_origins'] as const;

export interface TsunagiClientMetadata {
  first_party?: boolean;
  require_email?: boolean;
  allowed_cors_origins?: string[];
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

export function validateExtraClientMetadata(key: string, value: unknown): void {
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
    default:
  }
}
