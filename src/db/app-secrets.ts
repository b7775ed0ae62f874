import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Queryable } from './database.js';
import { isSealed, type MasterKeyring } from '../secrets/master-key.js';

const contextOf = (name: string) => `app_secrets:${name}`;

// Secrets generated once per deployment and shared by every process through the database, sealed
// with the master key (a database dump alone does not give the OTP pepper or the cookie key).
// INSERT .. ON CONFLICT DO NOTHING then SELECT: two processes starting together agree on one value.
export async function getOrCreateSecret(pool: pg.Pool, keyring: MasterKeyring, name: string, bytes = 32): Promise<string> {
  await pool.query('INSERT INTO app_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [
    name,
    keyring.seal(randomBytes(bytes).toString('base64url'), contextOf(name)),
  ]);
  const { rows } = await pool.query<{ value: string }>('SELECT value FROM app_secrets WHERE name = $1', [name]);
  const value = rows[0]?.value;
  if (!value) throw new Error(`secret ${name} could not be stored`);
  if (isSealed(value)) return keyring.open(value, contextOf(name));
  // Written before secrets were sealed: seal it where it is (the value itself stays the same).
  await pool.query('UPDATE app_secrets SET value = $3 WHERE name = $1 AND value = $2', [name, value, keyring.seal(value, contextOf(name))]);
  return value;
}

/**
 * Seals app secrets still in plain text, and re-seals those sealed with an older master key when
 * `reseal` is set. Returns how many rows changed.
 */
export async function sealAppSecrets(db: Queryable, keyring: MasterKeyring, reseal: boolean): Promise<number> {
  const { rows } = await db.query<{ name: string; value: string }>('SELECT name, value FROM app_secrets');
  let changed = 0;
  for (const { name, value } of rows) {
    let plain: string;
    if (!isSealed(value)) plain = value;
    else if (reseal && keyring.sealedWithOlderKey(value)) plain = keyring.open(value, contextOf(name));
    else continue;
    const r = await db.query('UPDATE app_secrets SET value = $3 WHERE name = $1 AND value = $2', [name, value, keyring.seal(plain, contextOf(name))]);
    changed += r.rowCount ?? 0;
  }
  return changed;
}
