import { randomInt } from 'node:crypto';
import type { Database } from '../../src/db/database.js';
import { migrate, readMigrations, type Migration } from '../../src/db/migrate.js';
import { openTestDatabase } from '../support/harness.js';
import { openEmptyDatabase } from './isolated-database.js';

let db: Database;
const madeTables: string[] = [];
const madeVersions: number[] = [];

beforeAll(async () => { db = await openTestDatabase(); });
afterAll(async () => {
  for (const t of madeTables) await db.pool.query(`DROP TABLE IF EXISTS ${t}`);
  if (madeVersions.length) await db.pool.query('DELETE FROM schema_migrations WHERE version = ANY($1::int[])', [madeVersions]);
  await db.close();
});

// Versions far above the real ones and random, since every test file shares one database in CI.
function scratchMigration(sqlFor: (table: string) => string): Migration & { table: string } {
  const version = randomInt(1_000_000, 2_000_000_000);
  const table = `x_test_${version}`;
  madeTables.push(table);
  madeVersions.push(version);
  return { version, name: `${version}_scratch.sql`, sql: sqlFor(table), table };
}

async function tableExists(name: string): Promise<boolean> {
  const { rows } = await db.pool.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [name]);
  return rows[0]?.t !== null;
}

async function recorded(version: number): Promise<boolean> {
  const { rowCount } = await db.pool.query('SELECT 1 FROM schema_migrations WHERE version = $1', [version]);
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
    for (const m of readMigrations()) expect(await recorded(m.version)).toBe(true);
  });

  it('applies a new migration once and records it', async () => {
    const m = scratchMigration((t) => `CREATE TABLE ${t} (id int)`);
    expect(await migrate(db.pool, [m])).toEqual([m.name]);
    expect(await tableExists(m.table)).toBe(true);
    expect(await recorded(m.version)).toBe(true);
    expect(await migrate(db.pool, [m])).toEqual([]);
  });

  it('leaves nothing behind when a migration fails halfway through', async () => {
    const m = scratchMigration((t) => `CREATE TABLE ${t} (id int); INSERT INTO ${t} VALUES (1); SELECT * FROM no_such_table_anywhere`);
    await expect(migrate(db.pool, [m])).rejects.toThrow(/no_such_table_anywhere/);
    expect(await tableExists(m.table)).toBe(false);
    expect(await recorded(m.version)).toBe(false);
  });

  it('leaves nothing behind when a migration has a syntax error', async () => {
    const m = scratchMigration((t) => `CREATE TABLE ${t} (id int); SELECT broken_syntax(`);
    await expect(migrate(db.pool, [m])).rejects.toThrow();
    expect(await tableExists(m.table)).toBe(false);
    expect(await recorded(m.version)).toBe(false);
  });

  it('keeps the migrations before a failing one and stops before the ones after it', async () => {
    const good = scratchMigration((t) => `CREATE TABLE ${t} (id int)`);
    const bad = scratchMigration((t) => `CREATE TABLE ${t} (id int); SELECT 1 / 0`);
    const later = scratchMigration((t) => `CREATE TABLE ${t} (id int)`);
    await expect(migrate(db.pool, [good, bad, later])).rejects.toThrow(/division by zero/);
    expect(await recorded(good.version)).toBe(true);
    expect(await tableExists(good.table)).toBe(true);
    expect(await recorded(bad.version)).toBe(false);
    expect(await tableExists(bad.table)).toBe(false);
    expect(await recorded(later.version)).toBe(false);
    expect(await tableExists(later.table)).toBe(false);
  });

  it('applies a migration exactly once when two starters run it at the same time', async () => {
    const m = scratchMigration((t) => `CREATE TABLE ${t} (id int)`);
    const results = await Promise.all([migrate(db.pool, [m]), migrate(db.pool, [m])]);
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
