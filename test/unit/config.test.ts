import { ConfigError, loadConfig } from '../../src/config.js';

const SECRET = 'x'.repeat(32);

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
  it('reports a missing https ISSUER, COOKIE_SECRETS and DATABASE_URL together, one problem each', () => {
    const problems = problemsOf({ NODE_ENV: 'production' });
    expect(problems).toHaveLength(3);
    expect(problems.filter((p) => p.startsWith('ISSUER'))).toHaveLength(1);
    expect(problems.filter((p) => p.startsWith('COOKIE_SECRETS'))).toHaveLength(1);
    expect(problems.filter((p) => p.startsWith('DATABASE_URL'))).toHaveLength(1);
  });

  it('refuses a plain http ISSUER', () => {
    const problems = problemsOf({
      NODE_ENV: 'production', ISSUER: 'http://id.example.test', COOKIE_SECRETS: SECRET, DATABASE_URL: 'postgres://db/tsunagi',
    });
    expect(problems).toEqual(['ISSUER must be an https URL in production']);
  });

  it('puts every problem in the error message, one line each', () => {
    let message = '';
    try {
      loadConfig({ NODE_ENV: 'production', ISSUER: 'http://id.example.test', PORT: 'eighty' });
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
      DATABASE_URL: 'postgresql://db/tsunagi',
    });
    expect(config.issuer).toBe('https://id.example.test');
    expect(config.cookieSecrets).toEqual([SECRET, 'y'.repeat(40)]);
    expect(config.host).toBe('0.0.0.0');
    expect(config.logLevel).toBe('info');
  });

  it('refuses cookie secrets shorter than 32 characters', () => {
    const problems = problemsOf({
      NODE_ENV: 'production', ISSUER: 'https://id.example.test', COOKIE_SECRETS: `${SECRET},short`, DATABASE_URL: 'postgres://db/t',
    });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^COOKIE_SECRETS must be .* at least 32 characters/);
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
      redisUrl: undefined,
      cookieSecrets: undefined,
      smtpUrl: undefined,
      trustProxy: false,
      logLevel: 'info',
      keysReloadSeconds: 60,
      ttl: { accessToken: 3600, idToken: 3600, refreshToken: 14 * 86400, session: 14 * 86400, interaction: 3600, grant: 365 * 86400 },
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

  it('refuses an ISSUER with a query or fragment', () => {
    expect(problemsOf({ ISSUER: 'https://id.example.test/?tenant=a' })).toEqual(['ISSUER must not have a query or fragment']);
  });
});
