import net from 'node:net';
import { loadConfig, type Config } from '../../src/config.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { startServer, type RunningServer } from '../../src/server.js';

/** A free loopback port (the issuer must be known before the server starts). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Which database the tests run on: DATABASE_URL when given (CI), otherwise an in-memory PGlite. */
export function describeBackends(): string {
  return `${process.env.DATABASE_URL ? 'postgres' : 'embedded PGlite'}${process.env.REDIS_URL ? ' + redis' : ''}`;
}

export function testConfig(env: Record<string, string | undefined> = {}): Config {
  return loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent',
    DATABASE_URL: process.env.DATABASE_URL,
    REDIS_URL: process.env.REDIS_URL,
    DATA_DIR: 'memory://',
    HOST: '127.0.0.1',
    // Test servers share one Redis in CI: their own key space keeps rate-limit counters (all
    // requests come from 127.0.0.1) and artifacts of one test file out of another's way.
    REDIS_KEY_PREFIX: `tsunagi-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}:`,
    ...env,
  });
}

/** Starts a complete Tsunagi on loopback (migrating a real database first). */
export async function startTestServer(env: Record<string, string | undefined> = {}, overrides: NonNullable<Parameters<typeof startServer>[1]> = {}): Promise<RunningServer> {
  const port = await freePort();
  // `{port}` in a value stands for the server's port, e.g. ISSUER: 'http://localhost:{port}' (passkey
  // tests: WebAuthn refuses an IP address as the relying party id).
  const withPort = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v?.replaceAll('{port}', String(port))]));
  const config = testConfig({ PORT: String(port), ISSUER: `http://127.0.0.1:${port}`, ...withPort });
  if (config.databaseUrl) {
    const db = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolMax: 1 });
    try { await migrate(db.pool); } finally { await db.close(); }
  }
  return startServer(config, overrides);
}

/** A migrated database for store-level tests. */
export async function openTestDatabase(): Promise<Database> {
  const db = await openDatabase({ databaseUrl: process.env.DATABASE_URL, dataDir: 'memory://', poolMax: 4 });
  await migrate(db.pool);
  return db;
}

export function uniqueEmail(tag = 'person'): string {
  return `${tag}.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}@example.test`;
}
