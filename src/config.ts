import { createPrivateKey } from 'node:crypto';
import net from 'node:net';
import { DEVELOPMENT_MASTER_KEY, parseMasterKey } from './secrets/master-key.js';
import type { RedisCredentials, RedisNodeAddress, RedisSettings } from './db/redis.js';

// One typed Config from the environment, validated once. Every problem is reported, one line each,
// so an operator fixes them in one go instead of one restart per mistake.

export type NodeEnv = 'production' | 'development' | 'test';

export interface Config {
  nodeEnv: NodeEnv;
  port: number;
  host: string;
  issuer: string;
  /** Passkeys: the relying party id (a domain) and the origins WebAuthn ceremonies may come from. */
  webauthn: { rpId: string; origins: string[] };
  /** Postgres connection string; undefined means the embedded PGlite database in dataDir. */
  databaseUrl: string | undefined;
  /**
   * A direct (session) connection to the same database when DATABASE_URL goes through a transaction
   * pooler (PgBouncer): LISTEN for client changes and migrations use it. Undefined: DATABASE_URL.
   */
  databaseDirectUrl: string | undefined;
  /** Apply pending migrations on start (under an advisory lock); false: refuse to start while any is pending. */
  migrateOnStart: boolean;
  /**
   * Pool queries as named prepared statements, planned once per connection (DATABASE_PREPARED_STATEMENTS,
   * default true). A pooler that cannot keep them (PgBouncer in transaction mode before 1.21) is
   * detected on its first refusal and the pool goes on without them; false skips even that.
   */
  dbPreparedStatements: boolean;
  dataDir: string;
  dbPoolMax: number;
  /** Redis (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES); undefined means Postgres holds everything. */
  redis: RedisSettings | undefined;
  /** Prepended to every Redis key, so deployments (or test servers) can share one Redis. */
  redisKeyPrefix: string;
  /** Secrets for signing cookies, newest first; undefined outside production means "generate and keep in the database". */
  cookieSecrets: string[] | undefined;
  /**
   * TSUNAGI_MASTER_KEY then the keys of TSUNAGI_MASTER_KEY_PREVIOUS: the first seals secrets at rest,
   * all open them. Undefined outside production means a key kept with the database (src/secrets/master-key.ts).
   */
  masterKeys: Buffer[] | undefined;
  smtpUrl: string | undefined;
  mailFrom: string;
  initialAccessToken: string | undefined;
  /** Bearer token for GET /metrics; in production /metrics is off without it. */
  metricsToken: string | undefined;
  /**
   * How many reverse proxies in front of Tsunagi append to X-Forwarded-For (0: none, the header is
   * ignored). The client's address is the entry that many places from the right: entries further
   * left were written by the client and prove nothing.
   */
  trustProxy: number;
  logLevel: string;
  keysReloadSeconds: number;
  /** Audit events older than this many days are swept (AUDIT_RETENTION_DAYS; README "Account lifecycle"). */
  auditRetentionDays: number;
  /** Twilio for SMS codes; undefined means the development outbox (and no SMS at all in production). */
  twilio: {
    accountSid: string;
    authToken: string;
    from: string | undefined;
    messagingServiceSid: string | undefined;
    verifyServiceSid: string | undefined;
    apiBaseUrl: string | undefined;
    timeoutMs: number;
  } | undefined;
  /** Region for phone numbers typed without a country code (ISO 3166 alpha-2). */
  defaultPhoneRegion: string;
  /** Upstream OpenID providers; each is on only when all its variables are set. */
  upstream: UpstreamConfig;
  /** Deadlines for dependencies (README "Operating it: failures"). */
  timeouts: {
    dbConnectMs: number;
    dbQueryMs: number;
    redisConnectMs: number;
    redisCommandMs: number;
    smtpMs: number;
  };
  /** On SIGTERM: how long in-flight requests may take before the process exits anyway. */
  shutdownDrainSeconds: number;
  /** Private hosts and networks oidc-provider's outbound requests (back-channel logout, sector_identifier_uri) may reach. */
  outboundAllowPrivate: OutboundAllowList;
  ttl: {
    accessToken: number;
    idToken: number;
    refreshToken: number;
    /** Seconds a rotated refresh token still yields tokens of its grant (two tabs refreshing at once). */
    refreshTokenReuse: number;
    session: number;
    interaction: number;
    grant: number;
  };
}

export interface GoogleUpstreamConfig {
  clientId: string;
  clientSecret: string;
  issuer: string;
  /** Cross-Account Protection: where /.well-known/risc-configuration is read (GOOGLE_RISC_ISSUER). */
  riscIssuer: string;
  /** The `aud` a Security Event Token may carry: GOOGLE_CLIENT_ID and the GOOGLE_RISC_AUDIENCES. */
  riscAudiences: string[];
}
export interface AppleUpstreamConfig {
  /** The Services ID. */
  clientId: string;
  teamId: string;
  keyId: string;
  /** The .p8 key (PKCS#8 PEM, P-256) that signs the client_secret JWT. */
  privateKeyPem: string;
  issuer: string;
}
export interface UpstreamConfig {
  google: GoogleUpstreamConfig | undefined;
  apple: AppleUpstreamConfig | undefined;
  /** Deadline of each request Tsunagi makes to an upstream provider (discovery, keys, token, revoke). */
  timeoutMs: number;
}

/** Host names (exact, lower case) and IP networks that outbound requests may reach although private. */
export interface OutboundAllowList {
  hosts: string[];
  networks: Array<{ address: string; prefix: number; family: 'ipv4' | 'ipv6' }>;
}

function outboundAllowList(raw: string | undefined, problems: string[]): OutboundAllowList {
  const list: OutboundAllowList = { hosts: [], networks: [] };
  for (const entry of (raw ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean)) {
    const [address = '', prefixText, extra] = entry.split('/');
    const family = net.isIP(address);
    if (family !== 0 && extra === undefined) {
      const max = family === 4 ? 32 : 128;
      const prefix = prefixText === undefined ? max : Number(prefixText);
      if (Number.isInteger(prefix) && prefix >= 0 && prefix <= max && (prefixText === undefined || /^\d+$/.test(prefixText))) {
        list.networks.push({ address, prefix, family: family === 4 ? 'ipv4' : 'ipv6' });
        continue;
      }
    } else if (prefixText === undefined && HOST_NAME.test(entry)) {
      list.hosts.push(entry);
      continue;
    }
    problems.push(`OUTBOUND_ALLOW_PRIVATE: "${entry}" is not an IP address, a network (10.0.0.0/8) or a host name`);
  }
  return list;
}

// One of three topologies, never two: a node that found Redis two ways would write half its keys to each.
function redisConfig(str: ReadVariable, problems: string[]): RedisSettings | undefined {
  const url = str('REDIS_URL');
  const sentinels = str('REDIS_SENTINELS');
  const masterName = str('REDIS_SENTINEL_MASTER');
  const clusterNodes = str('REDIS_CLUSTER_NODES');
  const credentials: RedisCredentials = { ...optional('username', str('REDIS_USERNAME')), ...optional('password', str('REDIS_PASSWORD')) };
  const sentinelCredentials: RedisCredentials = { ...optional('username', str('REDIS_SENTINEL_USERNAME')), ...optional('password', str('REDIS_SENTINEL_PASSWORD')) };
  const chosen = [url && 'REDIS_URL', sentinels && 'REDIS_SENTINELS', clusterNodes && 'REDIS_CLUSTER_NODES'].filter(Boolean);
  if (chosen.length > 1) {
    problems.push(`set only one of REDIS_URL, REDIS_SENTINELS and REDIS_CLUSTER_NODES (got ${chosen.join(' and ')})`);
    return undefined;
  }
  if (masterName !== undefined && sentinels === undefined) problems.push('REDIS_SENTINEL_MASTER needs REDIS_SENTINELS (the sentinels to ask for that primary)');
  if (sentinels === undefined && Object.keys(sentinelCredentials).length > 0) problems.push('REDIS_SENTINEL_USERNAME and REDIS_SENTINEL_PASSWORD need REDIS_SENTINELS');
  if (url !== undefined) {
    if (!/^rediss?:\/\//.test(url)) problems.push('REDIS_URL must be a redis:// or rediss:// URL');
    if (Object.keys(credentials).length > 0) problems.push('REDIS_USERNAME and REDIS_PASSWORD are for REDIS_SENTINELS and REDIS_CLUSTER_NODES: with REDIS_URL, put them in the URL (redis://user:password@host:port)');
    return { topology: 'single', url };
  }
  if (sentinels !== undefined) {
    if (masterName === undefined) problems.push('REDIS_SENTINELS needs REDIS_SENTINEL_MASTER (the name the sentinels monitor, as in `sentinel monitor <name> ...`)');
    else if (!/^[A-Za-z0-9._-]{1,128}$/.test(masterName)) problems.push('REDIS_SENTINEL_MASTER may only contain letters, digits and . _ -');
    return { topology: 'sentinel', sentinels: redisNodes('REDIS_SENTINELS', sentinels, 26379, problems), masterName: masterName ?? '', credentials, sentinelCredentials };
  }
  if (clusterNodes !== undefined) return { topology: 'cluster', nodes: redisNodes('REDIS_CLUSTER_NODES', clusterNodes, 6379, problems), credentials };
  if (Object.keys(credentials).length > 0) problems.push('REDIS_USERNAME and REDIS_PASSWORD need REDIS_SENTINELS or REDIS_CLUSTER_NODES');
  return undefined;
}

function optional<K extends string>(name: K, value: string | undefined): Partial<Record<K, string>> {
  return value === undefined ? {} : { [name]: value } as Record<K, string>;
}

/** "host:port,host:port" (a port left out is the default one; an IPv6 address in brackets: [::1]:26379). */
function redisNodes(name: string, raw: string, defaultPort: number, problems: string[]): RedisNodeAddress[] {
  const nodes: RedisNodeAddress[] = [];
  for (const entry of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+))(?::(\d{1,5}))?$/.exec(entry);
    const host = m?.[1] ?? m?.[2];
    const port = m?.[3] === undefined ? defaultPort : Number(m[3]);
    if (!host || !Number.isInteger(port) || port < 1 || port > 65535 || (m?.[1] !== undefined && net.isIP(host) !== 6)) {
      problems.push(`${name}: "${entry}" is not host:port`);
      continue;
    }
    nodes.push({ host, port });
  }
  if (nodes.length === 0 && !problems.some((p) => p.startsWith(name))) problems.push(`${name} must list at least one host:port`);
  return nodes;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  const str = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = str(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${name} must be an integer between ${min} and ${max} (got "${raw}")`);
      return fallback;
    }
    return n;
  };
  const bool = (name: string): boolean => {
    const raw = str(name);
    if (raw === undefined) return false;
    if (['1', 'true', 'yes'].includes(raw.toLowerCase())) return true;
    if (['0', 'false', 'no'].includes(raw.toLowerCase())) return false;
    problems.push(`${name} must be 1/true/yes or 0/false/no (got "${raw}")`);
    return false;
  };

  const rawEnv = str('NODE_ENV') ?? 'development';
  let nodeEnv: NodeEnv = 'development';
  if (rawEnv === 'production' || rawEnv === 'development' || rawEnv === 'test') nodeEnv = rawEnv;
  else problems.push(`NODE_ENV must be production, development or test (got "${rawEnv}")`);
  const production = nodeEnv === 'production';

  const port = int('PORT', 3000, 0, 65535);
  const host = str('HOST') ?? (production ? '0.0.0.0' : '127.0.0.1');

  let issuer = str('ISSUER');
  if (issuer === undefined) {
    if (production) problems.push('ISSUER is required in production (the public https URL of Tsunagi)');
    issuer = `http://localhost:${port}`;
  } else {
    try {
      const u = new URL(issuer);
      if (u.search || u.hash) problems.push('ISSUER must not have a query or fragment');
      if (production && u.protocol !== 'https:') problems.push('ISSUER must be an https URL in production');
      if (u.protocol !== 'https:' && u.protocol !== 'http:') problems.push('ISSUER must be an http(s) URL');
      issuer = issuer.replace(/\/+$/, '');
    } catch {
      problems.push(`ISSUER is not a valid URL (got "${issuer}")`);
    }
  }

  const webauthn = webauthnConfig(str('WEBAUTHN_RP_ID'), str('WEBAUTHN_ORIGINS'), issuer, production, problems);

  const databaseUrl = str('DATABASE_URL');
  if (databaseUrl === undefined && production) {
    problems.push('DATABASE_URL is required in production (the embedded database is for development only)');
  }
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    problems.push('DATABASE_URL must be a postgres:// or postgresql:// URL');
  }
  const databaseDirectUrl = str('DATABASE_DIRECT_URL');
  if (databaseDirectUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseDirectUrl)) {
    problems.push('DATABASE_DIRECT_URL must be a postgres:// or postgresql:// URL');
  }
  if (databaseDirectUrl !== undefined && databaseUrl === undefined) {
    problems.push('DATABASE_DIRECT_URL needs DATABASE_URL (it is the direct connection to the same database)');
  }

  const redis = redisConfig(str, problems);
  const redisKeyPrefix = str('REDIS_KEY_PREFIX') ?? 'tsunagi:';
  if (!/^[A-Za-z0-9:_.-]{1,64}$/.test(redisKeyPrefix)) problems.push('REDIS_KEY_PREFIX may only contain letters, digits and : _ . - (at most 64)');

  let cookieSecrets: string[] | undefined;
  const rawSecrets = str('COOKIE_SECRETS');
  if (rawSecrets !== undefined) {
    cookieSecrets = rawSecrets.split(',').map((s) => s.trim()).filter(Boolean);
    if (cookieSecrets.some((s) => s.length < 32)) {
      problems.push('COOKIE_SECRETS must be a comma-separated list of secrets of at least 32 characters each');
    }
  } else if (production) {
    problems.push('COOKIE_SECRETS is required in production (comma-separated, newest first, 32+ characters each)');
  }

  const masterKeys = masterKeyConfig(str('TSUNAGI_MASTER_KEY'), str('TSUNAGI_MASTER_KEY_PREVIOUS'), production, problems);

  const smtpUrl = str('SMTP_URL');
  if (smtpUrl !== undefined && !/^smtps?:\/\//.test(smtpUrl)) problems.push('SMTP_URL must be an smtp:// or smtps:// URL');

  const initialAccessToken = str('INITIAL_ACCESS_TOKEN');
  if (initialAccessToken !== undefined && initialAccessToken.length < 32) {
    problems.push('INITIAL_ACCESS_TOKEN must be at least 32 characters');
  }

  const metricsToken = str('METRICS_TOKEN');
  if (metricsToken !== undefined && (metricsToken.length < 32 || !/^[\x21-\x7e]+$/.test(metricsToken))) {
    problems.push('METRICS_TOKEN must be at least 32 printable ASCII characters without spaces');
  }

  const twilioSid = str('TWILIO_ACCOUNT_SID');
  const twilioToken = str('TWILIO_AUTH_TOKEN');
  const twilioFrom = str('TWILIO_FROM');
  const twilioMsid = str('TWILIO_MESSAGING_SERVICE_SID');
  const twilioVerify = str('TWILIO_VERIFY_SERVICE_SID');
  const twilioBase = str('TWILIO_API_BASE_URL');
  const twilioTimeout = int('TWILIO_TIMEOUT_MS', 10_000, 500, 120_000);
  let twilio: Config['twilio'];
  if (twilioSid || twilioToken || twilioFrom || twilioMsid || twilioVerify) {
    if (!twilioSid || !twilioToken) problems.push('TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are both required to send SMS');
    if (!twilioFrom && !twilioMsid && !twilioVerify) {
      problems.push('Twilio needs TWILIO_FROM, TWILIO_MESSAGING_SERVICE_SID or TWILIO_VERIFY_SERVICE_SID');
    }
    if (twilioBase !== undefined && !/^https?:\/\//.test(twilioBase)) problems.push('TWILIO_API_BASE_URL must be an http(s) URL');
    if (twilioSid && twilioToken) {
      twilio = { accountSid: twilioSid, authToken: twilioToken, from: twilioFrom, messagingServiceSid: twilioMsid, verifyServiceSid: twilioVerify, apiBaseUrl: twilioBase, timeoutMs: twilioTimeout };
    }
  }
  const defaultPhoneRegion = (str('DEFAULT_PHONE_REGION') ?? 'JP').toUpperCase();
  if (!/^[A-Z]{2}$/.test(defaultPhoneRegion)) problems.push('DEFAULT_PHONE_REGION must be a two-letter country code such as JP');

  const upstream: UpstreamConfig = {
    google: googleConfig(str, production, problems),
    apple: appleConfig(str, production, problems),
    timeoutMs: int('UPSTREAM_TIMEOUT_MS', 10_000, 500, 120_000),
  };

  const config: Config = {
    nodeEnv,
    port,
    host,
    issuer,
    webauthn,
    databaseUrl,
    databaseDirectUrl,
    migrateOnStart: str('MIGRATE_ON_START') === undefined ? true : bool('MIGRATE_ON_START'),
    dbPreparedStatements: str('DATABASE_PREPARED_STATEMENTS') === undefined ? true : bool('DATABASE_PREPARED_STATEMENTS'),
    dataDir: str('DATA_DIR') ?? './.data',
    dbPoolMax: int('DB_POOL_MAX', 10, 1, 200),
    redis,
    redisKeyPrefix,
    cookieSecrets,
    masterKeys,
    smtpUrl,
    mailFrom: str('MAIL_FROM') ?? 'Tsunagi <no-reply@localhost>',
    initialAccessToken,
    metricsToken,
    trustProxy: proxyHops(str('TRUST_PROXY'), problems),
    logLevel: str('LOG_LEVEL') ?? (nodeEnv === 'test' ? 'silent' : 'info'),
    keysReloadSeconds: int('KEYS_RELOAD_SECONDS', 60, 1, 86400),
    auditRetentionDays: int('AUDIT_RETENTION_DAYS', 400, 1, 36500),
    twilio,
    defaultPhoneRegion,
    upstream,
    timeouts: {
      dbConnectMs: int('DB_CONNECT_TIMEOUT_MS', 3000, 100, 120_000),
      dbQueryMs: int('DB_QUERY_TIMEOUT_MS', 5000, 100, 600_000),
      redisConnectMs: int('REDIS_CONNECT_TIMEOUT_MS', 2000, 100, 120_000),
      redisCommandMs: int('REDIS_COMMAND_TIMEOUT_MS', 2000, 50, 120_000),
      smtpMs: int('SMTP_TIMEOUT_MS', 5000, 100, 120_000),
    },
    shutdownDrainSeconds: int('SHUTDOWN_DRAIN_SECONDS', 10, 0, 3600),
    outboundAllowPrivate: outboundAllowList(str('OUTBOUND_ALLOW_PRIVATE'), problems),
    ttl: {
      accessToken: int('ACCESS_TOKEN_TTL', 3600, 60, 86400),
      idToken: int('ID_TOKEN_TTL', 3600, 60, 86400),
      refreshToken: int('REFRESH_TOKEN_TTL', 14 * 86400, 300, 365 * 86400),
      refreshTokenReuse: int('REFRESH_TOKEN_REUSE_SECONDS', 30, 0, 300),
      session: int('SESSION_TTL', 14 * 86400, 300, 365 * 86400),
      interaction: int('INTERACTION_TTL', 3600, 300, 86400),
      grant: int('GRANT_TTL', 365 * 86400, 3600, 5 * 365 * 86400),
    },
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

function masterKeyConfig(rawCurrent: string | undefined, rawPrevious: string | undefined, production: boolean, problems: string[]): Buffer[] | undefined {
  const generate = 'generate one with `openssl rand -base64 32`';
  if (rawCurrent === undefined) {
    if (production) problems.push(`TSUNAGI_MASTER_KEY is required in production (32 random bytes, base64; ${generate})`);
    if (rawPrevious !== undefined) problems.push('TSUNAGI_MASTER_KEY_PREVIOUS is set without TSUNAGI_MASTER_KEY');
    return undefined;
  }
  const current = parseMasterKey(rawCurrent);
  if (!current) problems.push(`TSUNAGI_MASTER_KEY must be 32 bytes written in base64 (${generate})`);
  const previous: Buffer[] = [];
  for (const raw of (rawPrevious ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    // "development": the well-known key a deployment without TSUNAGI_MASTER_KEY sealed with (an
    // external Postgres in development), so its secrets can be moved to a real key.
    const key = raw === 'development' ? DEVELOPMENT_MASTER_KEY : parseMasterKey(raw);
    if (key) previous.push(key);
    else problems.push('TSUNAGI_MASTER_KEY_PREVIOUS must be a comma-separated list of 32-byte base64 keys (or the word development)');
  }
  return current ? [current, ...previous] : undefined;
}

/**
 * TRUST_PROXY is a number of hops. `true`/`yes` (what a boolean setting used to take) mean one proxy,
 * the common case; `false`/`no` mean none.
 */
function proxyHops(raw: string | undefined, problems: string[]): number {
  if (raw === undefined) return 0;
  const word = raw.toLowerCase();
  if (word === 'true' || word === 'yes') return 1;
  if (word === 'false' || word === 'no') return 0;
  const hops = Number(raw);
  if (!/^\d+$/.test(raw) || hops > 10) {
    problems.push(`TRUST_PROXY must be the number of reverse proxies in front of Tsunagi, 0 to 10 (1 for one load balancer or TLS proxy; got "${raw}")`);
    return 0;
  }
  return hops;
}

const HOST_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

/**
 * WEBAUTHN_RP_ID defaults to the issuer's host name and WEBAUTHN_ORIGINS (comma-separated) to the
 * issuer's origin. Browsers only accept an RP ID equal to, or a parent domain of, the page's host.
 */
function webauthnConfig(rawRpId: string | undefined, rawOrigins: string | undefined, issuer: string, production: boolean, problems: string[]): Config['webauthn'] {
  let issuerUrl: URL | undefined;
  try { issuerUrl = new URL(issuer); } catch { /* ISSUER is reported already */ }
  const rpId = (rawRpId ?? issuerUrl?.hostname ?? 'localhost').toLowerCase();
  if (rawRpId !== undefined && !HOST_NAME.test(rpId)) {
    problems.push(`WEBAUTHN_RP_ID must be a host name such as id.example.com, without scheme, port or path (got "${rawRpId}")`);
  }
  if (rawOrigins === undefined) return { rpId, origins: issuerUrl ? [issuerUrl.origin] : [] };
  const origins: string[] = [];
  for (const raw of rawOrigins.split(',').map((s) => s.trim()).filter(Boolean)) {
    let u: URL;
    try { u = new URL(raw); } catch {
      problems.push(`WEBAUTHN_ORIGINS: "${raw}" is not a URL (expected an origin such as https://id.example.com)`);
      continue;
    }
    if (u.pathname !== '/' || u.search || u.hash || u.username || u.password || (u.protocol !== 'https:' && u.protocol !== 'http:')) {
      problems.push(`WEBAUTHN_ORIGINS: "${raw}" must be an origin only, such as https://id.example.com`);
    } else if (production && u.protocol !== 'https:') {
      problems.push(`WEBAUTHN_ORIGINS: "${raw}" must be https in production`);
    } else if (u.hostname !== rpId && !u.hostname.endsWith(`.${rpId}`)) {
      problems.push(`WEBAUTHN_ORIGINS: "${raw}" is not on WEBAUTHN_RP_ID "${rpId}" or one of its subdomains`);
    } else {
      origins.push(u.origin);
    }
  }
  if (origins.length === 0 && !problems.some((p) => p.startsWith('WEBAUTHN_ORIGINS'))) problems.push('WEBAUTHN_ORIGINS must list at least one origin');
  return { rpId, origins };
}

type ReadVariable = (name: string) => string | undefined;

function upstreamIssuer(name: string, raw: string | undefined, fallback: string, production: boolean, problems: string[]): string {
  if (raw === undefined) return fallback;
  try {
    const u = new URL(raw);
    if (u.search || u.hash) problems.push(`${name} must not have a query or fragment`);
    else if (u.protocol !== 'https:' && (production || u.protocol !== 'http:')) problems.push(`${name} must be an https URL${production ? ' in production' : ''}`);
  } catch {
    problems.push(`${name} is not a valid URL (got "${raw}")`);
  }
  return raw.replace(/\/+$/, '');
}

// A half-configured provider is a mistake, not "off": the operator meant to turn it on.
function googleConfig(str: ReadVariable, production: boolean, problems: string[]): GoogleUpstreamConfig | undefined {
  const clientId = str('GOOGLE_CLIENT_ID');
  const clientSecret = str('GOOGLE_CLIENT_SECRET');
  const rawIssuer = str('GOOGLE_ISSUER');
  if (!clientId && !clientSecret && !rawIssuer) return undefined;
  const missing = [['GOOGLE_CLIENT_ID', clientId], ['GOOGLE_CLIENT_SECRET', clientSecret]].filter(([, v]) => !v).map(([n]) => n);
  if (missing.length) problems.push(`Google sign-in is partly configured: ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} missing`);
  const issuer = upstreamIssuer('GOOGLE_ISSUER', rawIssuer, 'https://accounts.google.com', production, problems);
  const riscIssuer = upstreamIssuer('GOOGLE_RISC_ISSUER', str('GOOGLE_RISC_ISSUER'), 'https://accounts.google.com', production, problems);
  // Other OAuth clients of the same Google project whose users' events Tsunagi receives too.
  const extraAudiences = (str('GOOGLE_RISC_AUDIENCES') ?? '').split(',').map((a) => a.trim()).filter(Boolean);
  return clientId && clientSecret ? { clientId, clientSecret, issuer, riscIssuer, riscAudiences: [...new Set([clientId, ...extraAudiences])] } : undefined;
}

function appleConfig(str: ReadVariable, production: boolean, problems: string[]): AppleUpstreamConfig | undefined {
  const clientId = str('APPLE_CLIENT_ID');
  const teamId = str('APPLE_TEAM_ID');
  const keyId = str('APPLE_KEY_ID');
  // Env files often cannot hold line breaks: accept the PEM with literal \n sequences.
  const privateKeyPem = str('APPLE_PRIVATE_KEY')?.replace(/\\n/g, '\n');
  const rawIssuer = str('APPLE_ISSUER');
  if (!clientId && !teamId && !keyId && !privateKeyPem && !rawIssuer) return undefined;
  const missing = [['APPLE_CLIENT_ID', clientId], ['APPLE_TEAM_ID', teamId], ['APPLE_KEY_ID', keyId], ['APPLE_PRIVATE_KEY', privateKeyPem]]
    .filter(([, v]) => !v).map(([n]) => n);
  if (missing.length) problems.push(`Sign in with Apple is partly configured: ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} missing`);
  if (teamId && !/^[A-Z0-9]{10}$/.test(teamId)) problems.push(`APPLE_TEAM_ID must be the 10-character Team ID from the Apple developer account (got "${teamId}")`);
  if (keyId && !/^[A-Z0-9]{10}$/.test(keyId)) problems.push(`APPLE_KEY_ID must be the 10-character Key ID of the Sign in with Apple key (got "${keyId}")`);
  let keyUsable = false;
  if (privateKeyPem) {
    try {
      const key = createPrivateKey(privateKeyPem);
      keyUsable = key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
      if (!keyUsable) problems.push('APPLE_PRIVATE_KEY must be the P-256 (ES256) key Apple issued (.p8 file)');
    } catch {
      problems.push('APPLE_PRIVATE_KEY is not a PEM private key (paste the .p8 file; literal \\n line breaks are accepted)');
    }
  }
  const issuer = upstreamIssuer('APPLE_ISSUER', rawIssuer, 'https://appleid.apple.com', production, problems);
  return clientId && teamId && keyId && privateKeyPem && keyUsable ? { clientId, teamId, keyId, privateKeyPem, issuer } : undefined;
}
