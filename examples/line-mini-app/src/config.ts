// The example's whole configuration, from the environment, checked once at startup.

export interface LinkAppConfig {
  port: number;
  /** The LINE Login channel the LIFF app belongs to: LINE access tokens must have been issued for it. */
  lineChannelId: string;
  lineApiBaseUrl: string;
  /** Messaging API channel access token, for push messages; undefined disables POST /notify. */
  lineMessagingAccessToken: string | undefined;
  liffId: string | undefined;
  tsunagiIssuer: string;
  /** The LIFF page's client id at Tsunagi: the audience of the ID tokens this backend accepts. */
  tsunagiClientId: string;
  /** This backend's resource indicator; set it to accept JWT access tokens instead of ID tokens. */
  tsunagiResource: string | undefined;
  /** Method 2 (OpenID CIBA): this backend's own confidential client at Tsunagi; undefined disables /ciba/*. */
  tsunagiCiba: { clientId: string; clientSecret: string } | undefined;
  /** Method 3 (incremental export + link codes): a client-credentials client with scope tsunagi:export; undefined disables /link/code. */
  tsunagiExport: { clientId: string; clientSecret: string } | undefined;
  /** The clock link-code expiry is checked against (tests move it). */
  now: () => Date;
  databaseUrl: string | undefined;
  /** Shared secret the caller of POST /notify sends in the x-notify-secret header. */
  notifySecret: string | undefined;
  nonceTtlSeconds: number;
  /** How old the Tsunagi sign-in may be when linking. */
  maxAuthAgeSeconds: number;
}

export class LinkAppConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'LinkAppConfigError';
  }
}

export function loadLinkAppConfig(env: Record<string, string | undefined> = process.env): LinkAppConfig {
  const problems: string[] = [];
  const str = (name: string) => {
    const v = env[name]?.trim();
    return v ? v : undefined;
  };
  const required = (name: string, why: string) => {
    const v = str(name);
    if (v === undefined) problems.push(`${name} is required (${why})`);
    return v ?? '';
  };
  const url = (name: string, value: string | undefined) => {
    if (value === undefined) return undefined;
    try {
      const u = new URL(value);
      if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('scheme');
      return value.replace(/\/+$/, '');
    } catch {
      problems.push(`${name} must be an http(s) URL (got "${value}")`);
      return undefined;
    }
  };
  const int = (name: string, fallback: number, min: number, max: number) => {
    const raw = str(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) problems.push(`${name} must be an integer between ${min} and ${max}`);
    return Number.isInteger(n) ? n : fallback;
  };

  const lineChannelId = required('LINE_CHANNEL_ID', 'the LINE Login channel id of the LIFF app');
  if (lineChannelId && !/^\d+$/.test(lineChannelId)) problems.push('LINE_CHANNEL_ID must be the numeric channel id');
  const tsunagiIssuer = url('TSUNAGI_ISSUER', required('TSUNAGI_ISSUER', "Tsunagi's issuer URL") || undefined) ?? '';
  const tsunagiClientId = required('TSUNAGI_CLIENT_ID', "the LIFF page's client id at Tsunagi");
  // The resource is compared with the token's aud as is, so it is kept exactly as configured.
  const tsunagiResource = str('TSUNAGI_RESOURCE');
  if (tsunagiResource !== undefined) url('TSUNAGI_RESOURCE', tsunagiResource);
  const cibaClientId = str('TSUNAGI_CIBA_CLIENT_ID');
  const cibaClientSecret = str('TSUNAGI_CIBA_CLIENT_SECRET');
  if (Boolean(cibaClientId) !== Boolean(cibaClientSecret)) problems.push('TSUNAGI_CIBA_CLIENT_ID and TSUNAGI_CIBA_CLIENT_SECRET go together (method 2)');
  const exportClientId = str('TSUNAGI_EXPORT_CLIENT_ID');
  const exportClientSecret = str('TSUNAGI_EXPORT_CLIENT_SECRET');
  if (Boolean(exportClientId) !== Boolean(exportClientSecret)) problems.push('TSUNAGI_EXPORT_CLIENT_ID and TSUNAGI_EXPORT_CLIENT_SECRET go together (method 3)');
  const notifySecret = str('NOTIFY_SECRET');
  if (notifySecret !== undefined && notifySecret.length < 32) problems.push('NOTIFY_SECRET must be at least 32 characters');
  const databaseUrl = str('DATABASE_URL');
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) problems.push('DATABASE_URL must be a postgres:// URL');

  const config: LinkAppConfig = {
    port: int('PORT', 8080, 0, 65535),
    lineChannelId,
    lineApiBaseUrl: url('LINE_API_BASE_URL', str('LINE_API_BASE_URL')) ?? 'https://api.line.me',
    lineMessagingAccessToken: str('LINE_MESSAGING_ACCESS_TOKEN'),
    liffId: str('LIFF_ID'),
    tsunagiIssuer,
    tsunagiClientId,
    tsunagiResource,
    tsunagiCiba: cibaClientId && cibaClientSecret ? { clientId: cibaClientId, clientSecret: cibaClientSecret } : undefined,
    tsunagiExport: exportClientId && exportClientSecret ? { clientId: exportClientId, clientSecret: exportClientSecret } : undefined,
    now: () => new Date(),
    databaseUrl,
    notifySecret,
    nonceTtlSeconds: int('LINK_NONCE_TTL_SECONDS', 300, 30, 3600),
    maxAuthAgeSeconds: int('MAX_AUTH_AGE_SECONDS', 600, 30, 86400),
  };
  if (problems.length) throw new LinkAppConfigError(problems);
  return config;
}
