import { generateKeyPairSync } from 'node:crypto';
import { ConfigError, loadConfig } from '../../src/config.js';

const SECRET = 'x'.repeat(32);
const MASTER_KEY = Buffer.alloc(32, 7).toString('base64');

function problemsOf(env: Record<string, string | undefined>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected loadConfig to reject this environment');
}

describe('loadConfig in production', () => {
  it('reports a missing https ISSUER, COOKIE_SECRETS, DATABASE_URL and TSUNAGI_MASTER_KEY together, one problem each', () => {
    const problems = problemsOf({ NODE_ENV: 'production' });
    expect(problems).toHaveLength(4);
    expect(problems.filter((p) => p.startsWith('TSUNAGI_MASTER_KEY is required'))).toHaveLength(1);
    expect(problems.filter((p) => p.startsWith('ISSUER'))).toHaveLength(1);
    expect(problems.filter((p) => p.startsWith('COOKIE_SECRETS'))).toHaveLength(1);
    expect(problems.filter((p) => p.startsWith('DATABASE_URL'))).toHaveLength(1);
  });

  it('refuses a plain http ISSUER', () => {
    const problems = problemsOf({
      NODE_ENV: 'production', ISSUER: 'http://id.example.test', COOKIE_SECRETS: SECRET, DATABASE_URL: 'postgres://db/tsunagi', TSUNAGI_MASTER_KEY: MASTER_KEY,
    });
    expect(problems).toEqual(['ISSUER must be an https URL in production']);
  });

  it('puts every problem in the error message, one line each', () => {
    let message = '';
    try {
      loadConfig({ NODE_ENV: 'production', ISSUER: 'http://id.example.test', PORT: 'eighty', TSUNAGI_MASTER_KEY: MASTER_KEY });
    } catch (err) {
      message = (err as Error).message;
    }
    const lines = message.split('\n').filter((l) => l.startsWith('  - '));
    expect(lines).toHaveLength(4);
    expect(message).toMatch(/ISSUER must be an https URL/);
    expect(message).toMatch(/COOKIE_SECRETS is required/);
    expect(message).toMatch(/DATABASE_URL is required/);
    expect(message).toMatch(/PORT must be an integer/);
  });

  it('starts with an https ISSUER, cookie secrets and a database', () => {
    const config = loadConfig({
      NODE_ENV: 'production', ISSUER: 'https://id.example.test/', COOKIE_SECRETS: `${SECRET}, ${'y'.repeat(40)}`,
      DATABASE_URL: 'postgresql://db/tsunagi', TSUNAGI_MASTER_KEY: MASTER_KEY,
    });
    expect(config.issuer).toBe('https://id.example.test');
    expect(config.cookieSecrets).toEqual([SECRET, 'y'.repeat(40)]);
    expect(config.host).toBe('0.0.0.0');
    expect(config.logLevel).toBe('info');
  });

  it('refuses cookie secrets shorter than 32 characters', () => {
    const problems = problemsOf({
      NODE_ENV: 'production', ISSUER: 'https://id.example.test', COOKIE_SECRETS: `${SECRET},short`, DATABASE_URL: 'postgres://db/t', TSUNAGI_MASTER_KEY: MASTER_KEY,
    });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^COOKIE_SECRETS must be .* at least 32 characters/);
  });

  it('takes TSUNAGI_MASTER_KEY (base64 or base64url) and the previous keys of a rotation, newest first', () => {
    const next = Buffer.alloc(32, 9);
    const old = Buffer.alloc(32, 250);
    const config = loadConfig({
      NODE_ENV: 'production', ISSUER: 'https://id.example.test', COOKIE_SECRETS: SECRET, DATABASE_URL: 'postgres://db/t',
      TSUNAGI_MASTER_KEY: next.toString('base64url'), TSUNAGI_MASTER_KEY_PREVIOUS: ` ${old.toString('base64')} `,
    });
    expect(config.masterKeys).toEqual([next, old]);
  });

  it.each([
    ['a key of the wrong length', { TSUNAGI_MASTER_KEY: Buffer.alloc(16).toString('base64') }, /TSUNAGI_MASTER_KEY must be 32 bytes/],
    ['a key that is not base64', { TSUNAGI_MASTER_KEY: 'not a key!' }, /TSUNAGI_MASTER_KEY must be 32 bytes/],
    ['a malformed previous key', { TSUNAGI_MASTER_KEY: MASTER_KEY, TSUNAGI_MASTER_KEY_PREVIOUS: `${MASTER_KEY},short` }, /TSUNAGI_MASTER_KEY_PREVIOUS must be/],
  ])('refuses %s', (_name, env, message) => {
    const problems = problemsOf({ NODE_ENV: 'production', ISSUER: 'https://id.example.test', COOKIE_SECRETS: SECRET, DATABASE_URL: 'postgres://db/t', ...env });
    expect(problems).toEqual([expect.stringMatching(message)]);
  });
});

describe('loadConfig integers', () => {
  it.each([
    ['PORT', 'abc'],
    ['PORT', '3.5'],
    ['PORT', '70000'],
    ['DB_POOL_MAX', '0'],
    ['ACCESS_TOKEN_TTL', '10'],
    ['KEYS_RELOAD_SECONDS', '-1'],
  ])('rejects %s=%s', (name, value) => {
    const problems = problemsOf({ NODE_ENV: 'development', [name]: value });
    expect(problems).toEqual([expect.stringContaining(`${name} must be an integer between`)]);
    expect(problems[0]).toContain(`"${value}"`);
  });

  it('accepts integers at the edges of their range', () => {
    const config = loadConfig({ NODE_ENV: 'development', PORT: '0', DB_POOL_MAX: '200', ACCESS_TOKEN_TTL: '60' });
    expect(config.port).toBe(0);
    expect(config.dbPoolMax).toBe(200);
    expect(config.ttl.accessToken).toBe(60);
  });
});

describe('loadConfig defaults', () => {
  it('gives a development config on loopback with the embedded database', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      nodeEnv: 'development',
      port: 3000,
      host: '127.0.0.1',
      issuer: 'http://localhost:3000',
      databaseUrl: undefined,
      dataDir: './.data',
      dbPoolMax: 10,
      redis: undefined,
      cookieSecrets: undefined,
      smtpUrl: undefined,
      trustProxy: 0,
      logLevel: 'info',
      keysReloadSeconds: 60,
      auditRetentionDays: 400,
      ttl: { accessToken: 3600, idToken: 3600, refreshToken: 14 * 86400, refreshTokenReuse: 30, session: 14 * 86400, interaction: 3600, grant: 365 * 86400 },
    });
  });

  it('derives the default issuer from PORT and keeps test logging silent', () => {
    const config = loadConfig({ NODE_ENV: 'test', PORT: '4100' });
    expect(config.issuer).toBe('http://localhost:4100');
    expect(config.logLevel).toBe('silent');
  });

  it('treats blank variables as unset', () => {
    const config = loadConfig({ PORT: '  ', DATABASE_URL: '', ISSUER: ' ' });
    expect(config.port).toBe(3000);
    expect(config.databaseUrl).toBeUndefined();
    expect(config.issuer).toBe('http://localhost:3000');
  });

  it('rejects an unknown NODE_ENV and malformed URLs', () => {
    const problems = problemsOf({
      NODE_ENV: 'staging', ISSUER: 'not a url', DATABASE_URL: 'mysql://db', REDIS_URL: 'http://cache', SMTP_URL: 'mail.example.test',
      TRUST_PROXY: 'maybe',
    });
    expect(problems).toHaveLength(6);
    expect(problems.join('\n')).toMatch(/NODE_ENV must be/);
    expect(problems.join('\n')).toMatch(/ISSUER is not a valid URL/);
    expect(problems.join('\n')).toMatch(/DATABASE_URL must be a postgres/);
    expect(problems.join('\n')).toMatch(/REDIS_URL must be a redis/);
    expect(problems.join('\n')).toMatch(/SMTP_URL must be an smtp/);
    expect(problems.join('\n')).toMatch(/TRUST_PROXY must be/);
  });

  it('reads TRUST_PROXY as the number of proxies in front (true/yes meaning one, false/no none)', () => {
    expect(loadConfig({ TRUST_PROXY: '1' }).trustProxy).toBe(1);
    expect(loadConfig({ TRUST_PROXY: '2' }).trustProxy).toBe(2);
    expect(loadConfig({ TRUST_PROXY: '0' }).trustProxy).toBe(0);
    expect(loadConfig({ TRUST_PROXY: 'true' }).trustProxy).toBe(1);
    expect(loadConfig({ TRUST_PROXY: 'No' }).trustProxy).toBe(0);
    for (const raw of ['-1', '1.5', '11', 'all', '0x1']) {
      expect(problemsOf({ TRUST_PROXY: raw })).toEqual([
        `TRUST_PROXY must be the number of reverse proxies in front of Tsunagi, 0 to 10 (1 for one load balancer or TLS proxy; got "${raw}")`,
      ]);
    }
  });

  it('refuses an ISSUER with a query or fragment', () => {
    expect(problemsOf({ ISSUER: 'https://id.example.test/?tenant=a' })).toEqual(['ISSUER must not have a query or fragment']);
  });
});

describe('loadConfig Redis topologies', () => {
  it('reads one server from REDIS_URL', () => {
    expect(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6380' }).redis).toEqual({ topology: 'single', url: 'redis://127.0.0.1:6380' });
  });

  it('reads Sentinel: the sentinels (default port 26379, IPv6 in brackets), the primary name and both sets of credentials', () => {
    const config = loadConfig({
      REDIS_SENTINELS: 'sentinel-a:26380, 10.0.0.2 ,[::1]:26381', REDIS_SENTINEL_MASTER: 'tsunagi-primary',
      REDIS_USERNAME: 'app', REDIS_PASSWORD: 'data-secret', REDIS_SENTINEL_PASSWORD: 'sentinel-secret',
    });
    expect(config.redis).toEqual({
      topology: 'sentinel', masterName: 'tsunagi-primary',
      sentinels: [{ host: 'sentinel-a', port: 26380 }, { host: '10.0.0.2', port: 26379 }, { host: '::1', port: 26381 }],
      credentials: { username: 'app', password: 'data-secret' }, sentinelCredentials: { password: 'sentinel-secret' },
    });
  });

  it('reads a Cluster from its seed nodes (default port 6379)', () => {
    expect(loadConfig({ REDIS_CLUSTER_NODES: 'redis-0:7000,redis-1', REDIS_PASSWORD: 'p' }).redis).toEqual({
      topology: 'cluster', nodes: [{ host: 'redis-0', port: 7000 }, { host: 'redis-1', port: 6379 }], credentials: { password: 'p' },
    });
  });

  it('refuses two topologies at once, a Sentinel without its primary name, and malformed node lists', () => {
    expect(problemsOf({ REDIS_URL: 'redis://a', REDIS_CLUSTER_NODES: 'b:7000' })).toEqual([
      'set only one of REDIS_URL, REDIS_SENTINELS and REDIS_CLUSTER_NODES (got REDIS_URL and REDIS_CLUSTER_NODES)',
    ]);
    expect(problemsOf({ REDIS_SENTINELS: 'a:26379' }).join('\n')).toMatch(/REDIS_SENTINELS needs REDIS_SENTINEL_MASTER/);
    expect(problemsOf({ REDIS_SENTINEL_MASTER: 'm' }).join('\n')).toMatch(/REDIS_SENTINEL_MASTER needs REDIS_SENTINELS/);
    expect(problemsOf({ REDIS_CLUSTER_NODES: 'a:7000,b:99999,c:x' })).toEqual([
      'REDIS_CLUSTER_NODES: "b:99999" is not host:port', 'REDIS_CLUSTER_NODES: "c:x" is not host:port',
    ]);
    expect(problemsOf({ REDIS_CLUSTER_NODES: ' , ' }).join('\n')).toMatch(/REDIS_CLUSTER_NODES must list at least one host:port/);
  });

  it('sends credentials for REDIS_URL to the URL itself, and refuses them without a topology that uses them', () => {
    expect(problemsOf({ REDIS_URL: 'redis://a', REDIS_PASSWORD: 'p' }).join('\n')).toMatch(/put them in the URL/);
    expect(problemsOf({ REDIS_PASSWORD: 'p' }).join('\n')).toMatch(/need REDIS_SENTINELS or REDIS_CLUSTER_NODES/);
    expect(problemsOf({ REDIS_CLUSTER_NODES: 'a:7000', REDIS_SENTINEL_PASSWORD: 'p' }).join('\n')).toMatch(/REDIS_SENTINEL_PASSWORD need REDIS_SENTINELS/);
  });
});

describe('loadConfig upstream providers', () => {
  const appleKey = () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  };
  const apple = (over: Record<string, string | undefined> = {}) => ({
    APPLE_CLIENT_ID: 'com.example.web', APPLE_TEAM_ID: 'ABCDE12345', APPLE_KEY_ID: 'KEY1234567', APPLE_PRIVATE_KEY: appleKey().replace(/\n/g, '\\n'), ...over,
  });

  it('leaves both providers off when nothing is set', () => {
    const { upstream } = loadConfig({});
    expect(upstream).toEqual({ google: undefined, apple: undefined, timeoutMs: 10_000 });
  });

  it('turns Google on with id and secret, defaulting to the real issuer', () => {
    const { upstream } = loadConfig({ GOOGLE_CLIENT_ID: 'id.apps.googleusercontent.com', GOOGLE_CLIENT_SECRET: 's', UPSTREAM_TIMEOUT_MS: '3000' });
    expect(upstream.google).toEqual({
      clientId: 'id.apps.googleusercontent.com', clientSecret: 's', issuer: 'https://accounts.google.com',
      riscIssuer: 'https://accounts.google.com', riscAudiences: ['id.apps.googleusercontent.com'],
    });
    expect(upstream.timeoutMs).toBe(3000);
  });

  it('reads the Cross-Account Protection issuer and extra audiences, and refuses a RISC issuer that is not a URL', () => {
    const google = { GOOGLE_CLIENT_ID: 'id.apps.googleusercontent.com', GOOGLE_CLIENT_SECRET: 's' };
    const { upstream } = loadConfig({ ...google, GOOGLE_RISC_ISSUER: 'http://127.0.0.1:4001/', GOOGLE_RISC_AUDIENCES: ' other.apps.googleusercontent.com, id.apps.googleusercontent.com ' });
    expect(upstream.google).toMatchObject({ riscIssuer: 'http://127.0.0.1:4001', riscAudiences: ['id.apps.googleusercontent.com', 'other.apps.googleusercontent.com'] });
    expect(problemsOf({ ...google, GOOGLE_RISC_ISSUER: 'accounts.google.com' })).toEqual(['GOOGLE_RISC_ISSUER is not a valid URL (got "accounts.google.com")']);
  });

  it('reports a half-configured Google or Apple instead of turning it off', () => {
    expect(problemsOf({ GOOGLE_CLIENT_ID: 'id' })).toEqual(['Google sign-in is partly configured: GOOGLE_CLIENT_SECRET is missing']);
    expect(problemsOf({ GOOGLE_ISSUER: 'http://127.0.0.1:9999' })).toEqual(['Google sign-in is partly configured: GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET are missing']);
    expect(problemsOf({ APPLE_CLIENT_ID: 'com.example.web' })).toEqual(['Sign in with Apple is partly configured: APPLE_TEAM_ID, APPLE_KEY_ID, APPLE_PRIVATE_KEY are missing']);
  });

  it('turns Apple on with a P-256 key given with literal \\n line breaks', () => {
    const { upstream } = loadConfig(apple({ APPLE_ISSUER: 'http://127.0.0.1:4000/' }));
    expect(upstream.apple).toMatchObject({ clientId: 'com.example.web', teamId: 'ABCDE12345', keyId: 'KEY1234567', issuer: 'http://127.0.0.1:4000' });
    expect(upstream.apple?.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(loadConfig(apple()).upstream.apple?.issuer).toBe('https://appleid.apple.com');
  });

  it('refuses an Apple key that is not a P-256 private key, and malformed team and key ids', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    expect(problemsOf(apple({ APPLE_PRIVATE_KEY: rsa }))).toEqual(['APPLE_PRIVATE_KEY must be the P-256 (ES256) key Apple issued (.p8 file)']);
    expect(problemsOf(apple({ APPLE_PRIVATE_KEY: 'garbage' }))[0]).toMatch(/^APPLE_PRIVATE_KEY is not a PEM private key/);
    expect(problemsOf(apple({ APPLE_TEAM_ID: 'team', APPLE_KEY_ID: 'k' }))).toHaveLength(2);
  });

  it('requires https upstream issuers in production', () => {
    const problems = problemsOf({
      NODE_ENV: 'production', ISSUER: 'https://id.example.test', COOKIE_SECRETS: SECRET, DATABASE_URL: 'postgres://db/t', TSUNAGI_MASTER_KEY: MASTER_KEY,
      GOOGLE_CLIENT_ID: 'id', GOOGLE_CLIENT_SECRET: 's', GOOGLE_ISSUER: 'http://accounts.google.test',
    });
    expect(problems).toEqual(['GOOGLE_ISSUER must be an https URL in production']);
    expect(problemsOf({ UPSTREAM_TIMEOUT_MS: '5' })).toEqual(['UPSTREAM_TIMEOUT_MS must be an integer between 500 and 120000 (got "5")']);
  });
  it('reads the direct database URL and the start-up migration switch, and refuses them malformed', () => {
    expect(loadConfig({ DATABASE_URL: 'postgres://pgbouncer:6432/t', DATABASE_DIRECT_URL: 'postgres://db:5432/t' })).toMatchObject({
      databaseUrl: 'postgres://pgbouncer:6432/t', databaseDirectUrl: 'postgres://db:5432/t', migrateOnStart: true,
    });
    expect(loadConfig({ MIGRATE_ON_START: 'false' }).migrateOnStart).toBe(false);
    expect(problemsOf({ DATABASE_DIRECT_URL: 'postgres://db:5432/t' })).toEqual(['DATABASE_DIRECT_URL needs DATABASE_URL (it is the direct connection to the same database)']);
    expect(problemsOf({ DATABASE_URL: 'postgres://db/t', DATABASE_DIRECT_URL: 'mysql://db/t' })).toEqual(['DATABASE_DIRECT_URL must be a postgres:// or postgresql:// URL']);
    expect(problemsOf({ MIGRATE_ON_START: 'later' })).toEqual(['MIGRATE_ON_START must be 1/true/yes or 0/false/no (got "later")']);
  });
});
