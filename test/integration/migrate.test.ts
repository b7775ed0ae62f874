import { jest } from '@jest/globals';
import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { Database } from '../../src/db/database.js';
import { openDatabase } from '../../src/db/database.js';
import { BACKWARD_COMPATIBLE_MARKER, checkSchema, migrate, readMigrations, SchemaMismatch, type Migration } from '../../src/db/migrate.js';
import { startServer } from '../../src/server.js';
import { TsunagiProcess } from '../support/faults.js';
import { freePort, openTestDatabase, testConfig } from '../support/harness.js';
import { openEmptyDatabase, type EmptyDatabase } from './isolated-database.js';

// The shared database holds the real migrations only: scratch migrations go to an empty database of
// their own, since every server started meanwhile (other test files) checks the schema it finds.
let db: Database;
let scratch: EmptyDatabase;

// A new embedded database (WebAssembly Postgres) takes a while on a busy machine: hooks get time for it.
const DATABASE_SETUP_MS = 180_000;
jest.setTimeout(DATABASE_SETUP_MS);

beforeAll(async () => {
  db = await openTestDatabase();
  scratch = await openEmptyDatabase();
}, DATABASE_SETUP_MS);
afterAll(async () => {
  await scratch.close();
  await db.close();
});

function scratchMigration(sqlFor: (table: string) => string): Migration & { table: string } {
  const version = randomInt(1_000_000, 2_000_000_000);
  const table = `x_test_${version}`;
  return { version, name: `${version}_scratch.sql`, sql: sqlFor(table), table };
}

async function tableExists(name: string, on: pg.Pool = scratch.pool): Promise<boolean> {
  const { rows } = await on.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [name]);
  return rows[0]?.t !== null;
}

async function recorded(version: number, on: pg.Pool = scratch.pool): Promise<boolean> {
  const { rowCount } = await on.query('SELECT 1 FROM schema_migrations WHERE version = $1', [version]);
  return rowCount === 1;
}

describe('migrate', () => {
  it('reads the numbered SQL files in order', () => {
    const migrations = readMigrations();
    expect(migrations[0]?.name).toBe('001_core.sql');
    expect(migrations.map((m) => m.version)).toEqual([...migrations.map((m) => m.version)].sort((a, b) => a - b));
  });

  it('has recorded every migration file and does nothing when run again', async () => {
    expect(await migrate(db.pool)).toEqual([]);
    for (const m of readMigrations()) expect(await recorded(m.version, db.pool)).toBe(true);
  });

  it('applies a new migration once and records it', async () => {
    const m = scratchMigration((t) => `CREATE TABLE ${t} (id int)`);
    expect(await migrate(scratch.pool, [m])).toEqual([m.name]);
    expect(await tableExists(m.table)).toBe(true);
    expect(await recorded(m.version)).toBe(true);
    expect(await migrate(scratch.pool, [m])).toEqual([]);
  });

  it('leaves nothing behind when a migration fails halfway through', async () => {
    const m = scratchMigration((t) => `CREATE TABLE ${t} (id int); INSERT INTO ${t} VALUES (1); SELECT * FROM no_such_table_anywhere`);
    await expect(migrate(scratch.pool, [m])).rejects.toThrow(/no_such_table_anywhere/);
    expect(await tableExists(m.table)).toBe(false);
    expect(await recorded(m.version)).toBe(false);
  });

  it('leaves nothing behind when a migration has a syntax error', async () => {
    const m = scratchMigration((t) => `CREATE TABLE ${t} (id int); SELECT broken_syntax(`);
    await expect(migrate(scratch.pool, [m])).rejects.toThrow();
    expect(await tableExists(m.table)).toBe(false);
    expect(await recorded(m.version)).toBe(false);
  });

  it('keeps the migrations before a failing one and stops before the ones after it', async () => {
    const good = scratchMigration((t) => `CREATE TABLE ${t} (id int)`);
    const bad = scratchMigration((t) => `CREATE TABLE ${t} (id int); SELECT 1 / 0`);
    const later = scratchMigration((t) => `CREATE TABLE ${t} (id int)`);
    await expect(migrate(scratch.pool, [good, bad, later])).rejects.toThrow(/division by zero/);
    expect(await recorded(good.version)).toBe(true);
    expect(await tableExists(good.table)).toBe(true);
    expect(await recorded(bad.version)).toBe(false);
    expect(await tableExists(bad.table)).toBe(false);
    expect(await recorded(later.version)).toBe(false);
    expect(await tableExists(later.table)).toBe(false);
  });

  it('applies a migration exactly once when two starters run it at the same time', async () => {
    const m = scratchMigration((t) => `CREATE TABLE ${t} (id int)`);
    const results = await Promise.all([migrate(scratch.pool, [m]), migrate(scratch.pool, [m])]);
    expect(results.map((r) => r.length).sort()).toEqual([0, 1]);
    expect(await tableExists(m.table)).toBe(true);
  });

  it('migrates a fresh database exactly once when several processes start at the same time', async () => {
    const fresh = await openEmptyDatabase();
    try {
      const starters = [fresh.pool, fresh.openPool(), fresh.openPool()];
      const results = await Promise.all(starters.map((pool) => migrate(pool)));
      const names = readMigrations().map((m) => m.name);
      expect(results.flat().sort()).toEqual([...names].sort());
      const { rows } = await fresh.pool.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY version');
      expect(rows.map((r) => r.name)).toEqual(names);
    } finally {
      await fresh.close();
    }
  });
});

/** A database of its own that a server (in this process or another) can be pointed at by its environment. */
interface OwnDatabase { env: Record<string, string | undefined>; pool: pg.Pool; close(): Promise<void> }

async function ownDatabase(): Promise<OwnDatabase> {
  if (process.env.DATABASE_URL) {
    const empty = await openEmptyDatabase();
    return { env: { DATABASE_URL: empty.url }, pool: empty.pool, close: () => empty.close() };
  }
  // Embedded: a data folder whose socket another process (or server) joins, as the CLI does.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsunagi-schema-'));
  const embedded = await openDatabase({ databaseUrl: undefined, dataDir: dir, poolMax: 1 });
  return {
    env: { DATABASE_URL: undefined, DATA_DIR: dir }, pool: embedded.pool,
    async close() { await embedded.close(); fs.rmSync(dir, { recursive: true, force: true }); },
  };
}

const real = readMigrations();
const newer = (compatible: boolean): Migration => {
  const version = randomInt(1_000_000, 2_000_000_000);
  return { version, name: `${version}_from_a_newer_version.sql`, sql: `${compatible ? `${BACKWARD_COMPATIBLE_MARKER}\n` : ''}CREATE TABLE x_newer_${version} (id int)` };
};

describe('schema version check', () => {
  let own: EmptyDatabase;
  beforeEach(async () => { own = await openEmptyDatabase(); }, DATABASE_SETUP_MS);
  afterEach(async () => { await own.close(); }, DATABASE_SETUP_MS);

  it('refuses a database that was never migrated', async () => {
    await expect(checkSchema(own.pool)).rejects.toThrow(/no schema yet: run `npm run migrate`/);
  });

  it('accepts the schema this version migrated', async () => {
    await migrate(own.pool);
    expect(await checkSchema(own.pool)).toEqual({ newerCompatible: [] });
  });

  it('refuses a schema older than this version, naming the migrations not applied', async () => {
    await migrate(own.pool, real.slice(0, -1));
    const refusal = await checkSchema(own.pool).catch((e: unknown) => e);
    expect(refusal).toBeInstanceOf(SchemaMismatch);
    expect(String(refusal)).toMatch(/older than this version/);
    expect(String(refusal)).toContain(real.at(-1)?.name);
  });

  it('refuses a schema a newer version migrated, unless its extra migrations are declared backward compatible', async () => {
    const extra = newer(false);
    await migrate(own.pool, [...real, extra]);
    const refusal = await checkSchema(own.pool).catch((e: unknown) => e);
    expect(refusal).toBeInstanceOf(SchemaMismatch);
    expect(String(refusal)).toMatch(/newer than this version/);
    expect(String(refusal)).toContain(extra.name);

    const additive = newer(true);
    const own2 = await openEmptyDatabase();
    try {
      await migrate(own2.pool, [...real, additive]);
      expect(await checkSchema(own2.pool)).toEqual({ newerCompatible: [additive.name] });
    } finally {
      await own2.close();
    }
  });

  it('treats a newer migration recorded by a runner that knew no compatibility column as incompatible', async () => {
    await migrate(own.pool);
    await own.pool.query('ALTER TABLE schema_migrations DROP COLUMN backward_compatible');
    await own.pool.query(`INSERT INTO schema_migrations (version, name) VALUES (1999999999, '1999999999_old_runner.sql')`);
    await expect(checkSchema(own.pool)).rejects.toThrow(/1999999999_old_runner\.sql/);
  });

});

describe('migration files', () => {
  it('reads the backward-compatible marker from a migration file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsunagi-migrations-'));
    try {
      fs.writeFileSync(path.join(dir, '001_a.sql'), `${BACKWARD_COMPATIBLE_MARKER}\nCREATE TABLE a (id int);\n`);
      fs.writeFileSync(path.join(dir, '002_b.sql'), '-- tsunagi: backward-compatible? no, this is prose\nCREATE TABLE b (id int);\n');
      expect(readMigrations(dir).map((m) => [m.name, m.backwardCompatible])).toEqual([['001_a.sql', true], ['002_b.sql', false]]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('starting a server on a schema that does not match', () => {
  let own: OwnDatabase;
  beforeEach(async () => { own = await ownDatabase(); }, DATABASE_SETUP_MS);
  afterEach(async () => { await own.close(); }, DATABASE_SETUP_MS);

  async function start(env: Record<string, string | undefined>) {
    const port = await freePort();
    return startServer(testConfig({ PORT: String(port), ISSUER: `http://127.0.0.1:${port}`, ...own.env, ...env }));
  }

  it('applies pending migrations on start by default, then serves', async () => {
    await migrate(own.pool, real.slice(0, -1));
    const server = await start({});
    try {
      expect(await recorded(real.at(-1)?.version as number, own.pool)).toBe(true);
      expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
    } finally {
      await server.close(0);
    }
  });

  it('refuses to start with MIGRATE_ON_START=false while a migration is pending, and applies nothing', async () => {
    await migrate(own.pool, real.slice(0, -1));
    await expect(start({ MIGRATE_ON_START: 'false' })).rejects.toThrow(new RegExp(`older than this version.*${real.at(-1)?.name}`));
    expect(await recorded(real.at(-1)?.version as number, own.pool)).toBe(false);
  });

  it('an older node on a newer schema exits with 65 and says why; a backward-compatible one serves with a warning', async () => {
    const extra = newer(false);
    await migrate(own.pool, [...real, extra]);
    const older = new TsunagiProcess();
    try {
      const refused = await older.start({ ...own.env, REDIS_URL: undefined }).then(() => 'started', (e: unknown) => String(e));
      expect(refused).toMatch(/Tsunagi exited \(65\) before listening/);
      expect(refused).toMatch(new RegExp(`Tsunagi refuses to start: the database schema is newer than this version of Tsunagi: it has migration\\(s\\) ${extra.name}`));
    } finally {
      await older.stop();
    }

    await own.pool.query('UPDATE schema_migrations SET backward_compatible = true WHERE version = $1', [extra.version]);
    const tolerant = new TsunagiProcess();
    try {
      await tolerant.start({ ...own.env, REDIS_URL: undefined });
      const warning = await tolerant.waitForLog((l) => /newer migrations, declared backward compatible/.test(l.msg), 5000);
      expect(warning.migrations).toEqual([extra.name]);
      expect((await fetch(`${tolerant.url}/readyz`)).status).toBe(200);
    } finally {
      await tolerant.stop();
    }
  }, 240_000);
});

const describeWithPostgres = process.env.DATABASE_URL ? describe : describe.skip;
if (!process.env.DATABASE_URL) console.warn('DATABASE_URL not set: the migration-lock waiting test did NOT run (the embedded database is one connection)');

describeWithPostgres('the migration lock (real Postgres)', () => {
  it('makes starters wait while another holds the lock, then each migration is applied once and both succeed', async () => {
    const fresh = await openEmptyDatabase();
    const holder = new pg.Client({ connectionString: fresh.url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT pg_advisory_xact_lock(7431001)');
      const first = new pg.Pool({ connectionString: fresh.url, max: 1 });
      const second = new pg.Pool({ connectionString: fresh.url, max: 1 });
      try {
        const pids = await Promise.all([first, second].map(async (p) => (await p.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid as number));
        const runs = [migrate(first), migrate(second)];
        // Both are blocked on the migration lock (not failing, not applying anything).
        for (;;) {
          const { rows } = await holder.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = 7431001 AND NOT granted AND pid = ANY($1::int[])`, [pids]);
          if (rows[0]?.n === 2) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        expect(await tableExists('schema_migrations', fresh.pool)).toBe(false);
        await holder.query('COMMIT');
        const results = await Promise.all(runs);
        expect(results.flat().sort()).toEqual(real.map((m) => m.name).sort());
        const { rows } = await fresh.pool.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY version');
        expect(rows.map((r) => r.name)).toEqual(real.map((m) => m.name));
        expect(await checkSchema(fresh.pool)).toEqual({ newerCompatible: [] });
      } finally {
        await first.end();
        await second.end();
      }
    } finally {
      await holder.end();
      await fresh.close();
    }
  });
});
