import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { openDatabase, type Database } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';

/**
 * An empty database no other test file sees, not migrated, with a way to open more pools on it (to
 * play several processes). On a shared Postgres (DATABASE_URL) that is a schema of its own, dropped
 * on close; otherwise a fresh in-memory PGlite, which is one connection whatever the pool.
 */
export interface EmptyDatabase extends Database {
  /** Another pool on the same database (the same pool on the embedded database). */
  openPool(): pg.Pool;
  /** A DATABASE_URL that reaches this database alone (its schema first on the search path); undefined when embedded. */
  url: string | undefined;
}

export async function openEmptyDatabase(): Promise<EmptyDatabase> {
  const url = process.env.DATABASE_URL;
  if (!url) {
    const db = await openDatabase({ databaseUrl: undefined, dataDir: 'memory://', poolMax: 1 });
    return { ...db, openPool: () => db.pool, url: undefined };
  }
  const schema = `test_${randomUUID().replace(/-/g, '')}`;
  const admin = new pg.Pool({ connectionString: url, max: 1 });
  await admin.query(`CREATE SCHEMA ${schema}`);
  const pools: pg.Pool[] = [];
  const openPool = () => {
    const pool = new pg.Pool({ connectionString: url, max: 4, options: `-c search_path=${schema}` });
    pools.push(pool);
    return pool;
  };
  const scoped = new URL(url);
  scoped.searchParams.set('options', `-c search_path=${schema}`);
  return {
    pool: openPool(),
    embedded: false,
    openPool,
    url: scoped.href,
    async close() {
      await Promise.all(pools.map((p) => p.end()));
      await admin.query(`DROP SCHEMA ${schema} CASCADE`);
      await admin.end();
    },
  };
}

/** A migrated database no other test file sees, for tests of whole-table state (the signing keys). */
export async function openIsolatedDatabase(): Promise<Database> {
  const db = await openEmptyDatabase();
  try {
    await migrate(db.pool);
  } catch (err) {
    await db.close();
    throw err;
  }
  return db;
}
