import { randomBytes } from 'node:crypto';
import type pg from 'pg';

// Secrets generated once per deployment and shared by every process through the database.
// INSERT .. ON CONFLICT DO NOTHING then SELECT: two processes starting together agree on one value.
export async function getOrCreateSecret(pool: pg.Pool, name: string, bytes = 32): Promise<string> {
  await pool.query('INSERT INTO app_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [
    name,
    randomBytes(bytes).toString('base64url'),
  ]);
  const { rows } = await pool.query<{ value: string }>('SELECT value FROM app_secrets WHERE name = $1', [name]);
  const value = rows[0]?.value;
  if (!value) throw new Error(`secret ${name} could not be stored`);
  return value;
}
