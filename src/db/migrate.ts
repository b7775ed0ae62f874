import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { withTransaction } from './database.js';

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../migrations');

export interface Migration { version: number; name: string; sql: string }

export function readMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return fs.readdirSync(dir)
    .filter((f) => /^\d+_[\w-]+\.sql$/.test(f))
    .map((f) => ({ version: Number(f.split('_')[0]), name: f, sql: fs.readFileSync(path.join(dir, f), 'utf8') }))
    .sort((a, b) => a.version - b.version);
}

// Each migration runs in its own transaction together with its bookkeeping row, so a failing
// migration leaves the schema as it was. An advisory lock keeps concurrent starters from racing.
export async function migrate(pool: pg.Pool, migrations = readMigrations()): Promise<string[]> {
  // Under the same lock: two starters on a fresh database would otherwise both create the table, and
  // CREATE TABLE IF NOT EXISTS is not safe against that (a unique violation on pg_type).
  await withTransaction(pool, async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock(7431001)');
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
  });
  const applied: string[] = [];
  for (const m of migrations) {
    const did = await withTransaction(pool, async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock(7431001)');
      const seen = await tx.query('SELECT 1 FROM schema_migrations WHERE version = $1', [m.version]);
      if (seen.rowCount) return false;
      await tx.query(m.sql);
      await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      return true;
    });
    if (did) applied.push(m.name);
  }
  return applied;
}
