import { generateKeyPairSync, randomBytes, type JsonWebKey } from 'node:crypto';
import type pg from 'pg';
import { withTransaction, type Queryable } from '../db/database.js';
import type { MasterKeyring } from '../secrets/master-key.js';

export const SIGNING_ALGS = ['RS256', 'ES256', 'EdDSA'] as const;
export type SigningAlg = (typeof SIGNING_ALGS)[number];
export type KeyState = 'next' | 'current' | 'retired';

export interface SigningKeyJwk extends JsonWebKey { kid: string; alg: SigningAlg; use: 'sig'; key_ops?: string[] }
export interface KeySummary { kid: string; alg: SigningAlg; state: KeyState; createdAt: Date; activatedAt: Date | null; retireUntil: Date | null }
export interface LoadedKeys { jwks: { keys: SigningKeyJwk[] }; fingerprint: string }

function generateJwk(alg: SigningAlg): SigningKeyJwk {
  const pair = alg === 'RS256'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
  const jwk = pair.privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: randomBytes(12).toString('base64url'), alg, use: 'sig' };
}

const STATE_ORDER: Record<KeyState, number> = { current: 0, next: 1, retired: 2 };

/**
 * Signing keys in Postgres, shared by every process. Each algorithm has one 'current' key (signs),
 * one 'next' key (published, not yet signing) and any 'retired' keys still needed to verify tokens
 * they signed. Rotation promotes next -> current -> retired, so a key is in every relying party's
 * JWKS cache before it signs anything.
 */
export class SigningKeyStore {
  /** Private keys are sealed with the master key; a database dump holds no usable key material. */
  constructor(private readonly pool: pg.Pool, private readonly keyring: MasterKeyring) {}

  private seal(jwk: SigningKeyJwk): string {
    return this.keyring.seal(JSON.stringify(jwk), `signing_keys:${jwk.kid}`);
  }

  private privateJwkOf(row: { kid: string; private_jwk: SigningKeyJwk | null; sealed_private_jwk: string | null }): SigningKeyJwk {
    if (row.sealed_private_jwk) return JSON.parse(this.keyring.open(row.sealed_private_jwk, `signing_keys:${row.kid}`)) as SigningKeyJwk;
    // Written before migration 006 and not yet sealed (the start seals it).
    if (row.private_jwk) return row.private_jwk;
    throw new Error(`signing key ${row.kid} has no private key`);
  }

  /**
   * Seals private keys still in plain text (rows from before migration 006) and, with `reseal`,
   * re-seals keys sealed with an older master key. Returns how many rows changed.
   */
  async sealKeys(db: Queryable, reseal: boolean): Promise<number> {
    const { rows } = await db.query<{ kid: string; private_jwk: SigningKeyJwk | null; sealed_private_jwk: string | null }>(
      'SELECT kid, private_jwk, sealed_private_jwk FROM signing_keys');
    let changed = 0;
    for (const row of rows) {
      const plain = row.private_jwk !== null;
      const old = row.sealed_private_jwk !== null && reseal && this.keyring.sealedWithOlderKey(row.sealed_private_jwk);
      if (!plain && !old) continue;
      const jwk = { ...this.privateJwkOf(row), kid: row.kid };
      const r = await db.query(
        `UPDATE signing_keys SET sealed_private_jwk = $2, private_jwk = NULL
         WHERE kid = $1 AND sealed_private_jwk IS NOT DISTINCT FROM $3`, [row.kid, this.seal(jwk), row.sealed_private_jwk]);
      changed += r.rowCount ?? 0;
    }
    return changed;
  }

  /** First start: create a current and a next key for each algorithm (idempotent, race-safe). */
  async ensureKeys(): Promise<number> {
    const { rows } = await this.pool.query<{ alg: SigningAlg; state: KeyState }>(
      `SELECT alg, state FROM signing_keys WHERE state IN ('current', 'next')`);
    let created = 0;
    for (const alg of SIGNING_ALGS) {
      for (const state of ['current', 'next'] as const) {
        if (rows.some((r) => r.alg === alg && r.state === state)) continue;
        const jwk = generateJwk(alg);
        const r = await this.pool.query(
          `INSERT INTO signing_keys (kid, alg, state, sealed_private_jwk, activated_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT DO NOTHING`,
          [jwk.kid, alg, state, this.seal(jwk), state === 'current' ? new Date() : null]);
        created += r.rowCount ?? 0;
      }
    }
    return created;
  }

  /** The private JWKS for oidc-provider: current keys sign; next and retired keys only verify. */
  async load(now = new Date()): Promise<LoadedKeys> {
    const { rows } = await this.pool.query<{ kid: string; alg: SigningAlg; state: KeyState; private_jwk: SigningKeyJwk | null; sealed_private_jwk: string | null }>(
      `SELECT kid, alg, state, private_jwk, sealed_private_jwk FROM signing_keys WHERE state <> 'retired' OR retire_until > $1`, [now]);
    rows.sort((a, b) => STATE_ORDER[a.state] - STATE_ORDER[b.state] || SIGNING_ALGS.indexOf(a.alg) - SIGNING_ALGS.indexOf(b.alg) || a.kid.localeCompare(b.kid));
    const keys = rows.map((r) => ({
      ...this.privateJwkOf(r),
      kid: r.kid,
      alg: r.alg,
      use: 'sig' as const,
      // oidc-provider never selects a key for signing unless key_ops allows 'sign'.
      ...(r.state === 'current' ? {} : { key_ops: ['verify'] }),
    }));
    const fingerprint = [...rows].sort((a, b) => (a.kid < b.kid ? -1 : 1)).map((r) => `${r.kid}:${r.state}`).join(',');
    return { jwks: { keys }, fingerprint };
  }

  async list(): Promise<KeySummary[]> {
    const { rows } = await this.pool.query<{ kid: string; alg: SigningAlg; state: KeyState; created_at: Date; activated_at: Date | null; retire_until: Date | null }>(
      'SELECT kid, alg, state, created_at, activated_at, retire_until FROM signing_keys ORDER BY alg, created_at');
    return rows.map((r) => ({ kid: r.kid, alg: r.alg, state: r.state, createdAt: r.created_at, activatedAt: r.activated_at, retireUntil: r.retire_until }));
  }

  /**
   * next -> current, current -> retired (kept for verification for `verifyForSeconds`, the longest
   * lifetime of anything it signed), a fresh next key, and expired retired keys deleted.
   */
  async rotate(verifyForSeconds: number, now = new Date()): Promise<{ promoted: string[]; retired: string[]; created: string[]; deleted: string[] }> {
    return withTransaction(this.pool, async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock(7431002)');
      const deleted = await tx.query<{ kid: string }>(`DELETE FROM signing_keys WHERE state = 'retired' AND retire_until <= $1 RETURNING kid`, [now]);
      const retired = await tx.query<{ kid: string }>(
        `UPDATE signing_keys SET state = 'retired', retired_at = $1, retire_until = $2 WHERE state = 'current' RETURNING kid`,
        [now, new Date(now.getTime() + verifyForSeconds * 1000)]);
      const promoted = await tx.query<{ kid: string }>(
        `UPDATE signing_keys SET state = 'current', activated_at = $1 WHERE state = 'next' RETURNING kid`, [now]);
      const created: string[] = [];
      for (const alg of SIGNING_ALGS) {
        const has = await tx.query(`SELECT 1 FROM signing_keys WHERE alg = $1 AND state = 'current'`, [alg]);
        if (!has.rowCount) {
          const jwk = generateJwk(alg);
          await tx.query(`INSERT INTO signing_keys (kid, alg, state, sealed_private_jwk, activated_at) VALUES ($1, $2, 'current', $3, $4)`, [jwk.kid, alg, this.seal(jwk), now]);
          created.push(jwk.kid);
        }
        const jwk = generateJwk(alg);
        await tx.query(`INSERT INTO signing_keys (kid, alg, state, sealed_private_jwk) VALUES ($1, $2, 'next', $3)`, [jwk.kid, alg, this.seal(jwk)]);
        created.push(jwk.kid);
      }
      await tx.query(`INSERT INTO audit_events (type, data) VALUES ('key_rotation', $1)`, [{
        promoted: promoted.rows.map((r) => r.kid), retired: retired.rows.map((r) => r.kid), created, deleted: deleted.rows.map((r) => r.kid),
      }]);
      return {
        promoted: promoted.rows.map((r) => r.kid), retired: retired.rows.map((r) => r.kid), created, deleted: deleted.rows.map((r) => r.kid),
      };
    });
  }

  async fingerprint(now = new Date()): Promise<string> {
    const { rows } = await this.pool.query<{ f: string | null }>(
      `SELECT string_agg(kid || ':' || state, ',' ORDER BY kid COLLATE "C") AS f FROM signing_keys WHERE state <> 'retired' OR retire_until > $1`, [now]);
    return rows[0]?.f ?? '';
  }
}
