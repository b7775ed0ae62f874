import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { withTransaction, type Queryable } from './database.js';

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../migrations');

/**
 * A migration file that starts a line with this marker says that Tsunagi versions older than it keep
 * working on the schema once it is applied (it only adds: a table, a nullable column, an index). It
 * is recorded with the migration, so an older node, which has never seen the file, can read it.
 */
export const BACKWARD_COMPATIBLE_MARKER = '-- tsunagi: backward-compatible';

export interface Migration { version: number; name: string; sql: string; backwardCompatible?: boolean }

export function readMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return fs.readdirSync(dir)
    .filter((f) => /^\d+_[\w-]+\.sql$/.test(f))
    .map((f) => {
      const sql = fs.readFileSync(path.join(dir, f), 'utf8');
      return { version: Number(f.split('_')[0]), name: f, sql, backwardCompatible: isBackwardCompatible(sql) };
    })
    .sort((a, b) => a.version - b.version);
}

function isBackwardCompatible(sql: string): boolean {
  return sql.split('\n').some((line) => line.trim() === BACKWARD_COMPATIBLE_MARKER);
}

// One lock for every schema change: migrate() of every process, whatever connection it comes through.
// Transaction-level (pg_advisory_xact_lock), so it also holds through a transaction pooler (PgBouncer).
const MIGRATION_LOCK = 7431001;

// Each migration runs in its own transaction together with its bookkeeping row, so a failing
// migration leaves the schema as it was. The advisory lock makes a second starter wait for the
// first one's migration and then see it recorded, so each migration is applied exactly once.
export async function migrate(pool: pg.Pool, migrations = readMigrations()): Promise<string[]> {
  // Under the same lock: two starters on a fresh database would otherwise both create the table, and
  // CREATE TABLE IF NOT EXISTS is not safe against that (a unique violation on pg_type).
  await withTransaction(pool, async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    await tx.query('ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS backward_compatible boolean NOT NULL DEFAULT false');
  });
  const applied: string[] = [];
  for (const m of migrations) {
    const did = await withTransaction(pool, async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      const seen = await tx.query('SELECT 1 FROM schema_migrations WHERE version = $1', [m.version]);
      if (seen.rowCount) return false;
      await tx.query(m.sql);
      await tx.query('INSERT INTO schema_migrations (version, name, backward_compatible) VALUES ($1, $2, $3)',
        [m.version, m.name, m.backwardCompatible ?? isBackwardCompatible(m.sql)]);
      return true;
    });
    if (did) applied.push(m.name);
  }
  return applied;
}

/**
 * The schema does not match this version of Tsunagi: it is not migrated yet, or a newer version has
 * applied migrations this one does not know. The process refuses to serve instead of failing at
 * random on a column that is missing or means something else.
 */
export class SchemaMismatch extends Error {
  /** EX_DATAERR (sysexits.h): the data this process was given (the database) does not fit it. */
  static readonly EXIT_CODE = 65;

  constructor(message: string) {
    super(message);
    this.name = 'SchemaMismatch';
  }
}

export interface SchemaCheck {
  /** Migrations the database has that this version does not know, all declared backward compatible. */
  newerCompatible: string[];
}

/**
 * The rule every server and CLI process applies once migrations ran (or were left to someone else):
 * - every migration this version knows must be applied (otherwise: run `npm run migrate`);
 * - a migration the database has and this version does not know (a newer version applied it) is
 *   tolerated only when it was declared backward compatible; otherwise this version refuses.
 */
export async function checkSchema(db: Queryable, migrations = readMigrations()): Promise<SchemaCheck> {
  const { rows: exists } = await db.query<{ t: string | null }>(`SELECT to_regclass('schema_migrations')::text AS t`);
  if (exists[0]?.t === null) {
    throw new SchemaMismatch('the database has no schema yet: run `npm run migrate` (or start with MIGRATE_ON_START=true, the default)');
  }
  // to_jsonb(row): the column is absent on a database an older runner created and nothing migrated since.
  const { rows } = await db.query<{ version: number; name: string; compatible: boolean | null }>(
    `SELECT version, name, (to_jsonb(m) ->> 'backward_compatible')::boolean AS compatible FROM schema_migrations m ORDER BY version`);
  const applied = new Map(rows.map((r) => [r.version, r]));
  const known = new Set(migrations.map((m) => m.version));
  const missing = migrations.filter((m) => !applied.has(m.version)).map((m) => m.name);
  const newer = rows.filter((r) => !known.has(r.version));
  const incompatible = newer.filter((r) => r.compatible !== true).map((r) => r.name);
  if (incompatible.length) {
    throw new SchemaMismatch(
      `the database schema is newer than this version of Tsunagi: it has migration(s) ${incompatible.join(', ')} that this version does not know ` +
      'and that are not declared backward compatible. A newer Tsunagi migrated this database; run that version (or restore the database) ' +
      'instead of this one. Refusing to serve.');
  }
  if (missing.length) {
    throw new SchemaMismatch(
      `the database schema is older than this version of Tsunagi: migration(s) ${missing.join(', ')} are not applied. ` +
      'Run `npm run migrate` (the migration job), or start with MIGRATE_ON_START=true. Refusing to serve.');
  }
  return { newerCompatible: newer.map((r) => r.name) };
}
