import type pg from 'pg';
import { isUniqueViolation, type Queryable } from '../db/database.js';
import { AlreadyTaken } from './already-taken.js';

export type PasskeyDeviceType = 'singleDevice' | 'multiDevice';

/** A registered WebAuthn credential (a passkey) of an account. */
export interface Passkey {
  /** Credential id, base64url. */
  id: string;
  accountId: string;
  /** COSE public key. */
  publicKey: Uint8Array<ArrayBuffer>;
  counter: number;
  transports: string[];
  aaguid: string | null;
  deviceType: PasskeyDeviceType;
  backedUp: boolean;
  name: string;
  createdAt: Date;
  lastUsedAt: Date | null;
}

/** What the account page shows of a passkey. */
export type PasskeySummary = Pick<Passkey, 'id' | 'name' | 'createdAt' | 'lastUsedAt' | 'deviceType' | 'backedUp' | 'transports'>;

export type NewPasskey = Omit<Passkey, 'createdAt' | 'lastUsedAt'>;

export type WebAuthnPurpose = 'authenticate' | 'register';

export interface NewWebAuthnChallenge {
  id: string;
  /** base64url, as sent to the browser and echoed in clientDataJSON. */
  challenge: string;
  /** What asked for it: an interaction uid (sign-in) or an account-page binding (registration). */
  binding: string;
  purpose: WebAuthnPurpose;
  /** Registration only: the account the new credential will belong to. */
  accountId: string | null;
  expiresAt: Date;
}

export type ChallengeConsumption =
  | { ok: true }
  | { ok: false; reason: 'unknown_challenge' | 'challenge_mismatch' | 'challenge_used' | 'challenge_expired' };

export class CredentialAlreadyRegistered extends AlreadyTaken {
  constructor() { super('this passkey is already registered'); }
}

interface PasskeyRow {
  id: string; account_id: string; public_key: Buffer; counter: string; transports: string[]; aaguid: string | null;
  device_type: PasskeyDeviceType; backed_up: boolean; name: string; created_at: Date; last_used_at: Date | null;
}

const toPasskey = (r: PasskeyRow): Passkey => ({
  id: r.id, accountId: r.account_id, publicKey: new Uint8Array(r.public_key), counter: Number(r.counter), transports: r.transports,
  aaguid: r.aaguid, deviceType: r.device_type, backedUp: r.backed_up, name: r.name, createdAt: r.created_at, lastUsedAt: r.last_used_at,
});

// All passkey SQL: credentials and their single-use ceremony challenges.
export class PasskeyStore {
  constructor(private readonly pool: pg.Pool) {}

  /** Throws CredentialAlreadyRegistered when the credential id is already stored (for any account). */
  async create(p: NewPasskey, db: Queryable = this.pool): Promise<Passkey> {
    try {
      const { rows } = await db.query<PasskeyRow>(
        `INSERT INTO webauthn_credentials (id, account_id, public_key, counter, transports, aaguid, device_type, backed_up, name)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *`,
        [p.id, p.accountId, Buffer.from(p.publicKey), p.counter, p.transports, p.aaguid, p.deviceType, p.backedUp, p.name],
      );
      return toPasskey(rows[0] as PasskeyRow);
    } catch (err) {
      if (isUniqueViolation(err)) throw new CredentialAlreadyRegistered();
      throw err;
    }
  }

  async listForAccount(accountId: string, db: Queryable = this.pool): Promise<PasskeySummary[]> {
    const { rows } = await db.query<PasskeyRow>(
      'SELECT * FROM webauthn_credentials WHERE account_id = $1 ORDER BY created_at, id', [accountId]);
    return rows.map((r) => {
      const p = toPasskey(r);
      return { id: p.id, name: p.name, createdAt: p.createdAt, lastUsedAt: p.lastUsedAt, deviceType: p.deviceType, backedUp: p.backedUp, transports: p.transports };
    });
  }

  /** Credential ids and transports of an account (for excludeCredentials). */
  async descriptorsForAccount(accountId: string, db: Queryable = this.pool): Promise<Array<{ id: string; transports: string[] }>> {
    const { rows } = await db.query<{ id: string; transports: string[] }>(
      'SELECT id, transports FROM webauthn_credentials WHERE account_id = $1 ORDER BY created_at, id', [accountId]);
    return rows;
  }

  async findByCredentialId(id: string, db: Queryable = this.pool): Promise<Passkey | undefined> {
    const { rows } = await db.query<PasskeyRow>('SELECT * FROM webauthn_credentials WHERE id = $1', [id]);
    return rows[0] ? toPasskey(rows[0]) : undefined;
  }

  /**
   * Records a successful use. The counter must move forward (or stay 0 for authenticators that keep
   * none); the condition is in the UPDATE itself, so of two racing uses of one assertion only one wins.
   */
  async recordUse(id: string, use: { counter: number; backedUp: boolean; at: Date }, db: Queryable = this.pool): Promise<boolean> {
    const r = await db.query(
      `UPDATE webauthn_credentials SET counter = $2, backed_up = $3, last_used_at = $4
       WHERE id = $1 AND (counter < $2 OR (counter = 0 AND $2 = 0))`,
      [id, use.counter, use.backedUp, use.at],
    );
    return (r.rowCount ?? 0) === 1;
  }

  async rename(accountId: string, id: string, name: string, db: Queryable = this.pool): Promise<boolean> {
    const r = await db.query('UPDATE webauthn_credentials SET name = $3 WHERE account_id = $1 AND id = $2', [accountId, id, name]);
    return (r.rowCount ?? 0) === 1;
  }

  async delete(accountId: string, id: string, db: Queryable = this.pool): Promise<boolean> {
    const r = await db.query('DELETE FROM webauthn_credentials WHERE account_id = $1 AND id = $2', [accountId, id]);
    return (r.rowCount ?? 0) === 1;
  }

  async countForAccount(accountId: string, db: Queryable = this.pool): Promise<number> {
    const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM webauthn_credentials WHERE account_id = $1', [accountId]);
    return Number(rows[0]?.n ?? 0);
  }

  async createChallenge(c: NewWebAuthnChallenge): Promise<void> {
    await this.pool.query(
      `INSERT INTO webauthn_challenges (id, binding, purpose, account_id, challenge, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
      [c.id, c.binding, c.purpose, c.accountId, c.challenge, c.expiresAt],
    );
  }

  /**
   * Takes a challenge once: only for the binding, purpose (and, for registration, account) it was
   * made for, unexpired and unused. Atomic, so two responses to one challenge cannot both pass.
   * A challenge presented by another binding is left untouched for its owner.
   */
  async consumeChallenge(c: { challenge: string; binding: string; purpose: WebAuthnPurpose; accountId: string | null; now: Date }): Promise<ChallengeConsumption> {
    const taken = await this.pool.query(
      `UPDATE webauthn_challenges SET consumed_at = $5
       WHERE challenge = $1 AND binding = $2 AND purpose = $3 AND account_id IS NOT DISTINCT FROM $4::uuid
         AND consumed_at IS NULL AND expires_at > $5
       RETURNING id`,
      [c.challenge, c.binding, c.purpose, c.accountId, c.now],
    );
    if ((taken.rowCount ?? 0) === 1) return { ok: true };
    // Why not: for a clear message only; nothing below changes state.
    const { rows } = await this.pool.query<{ binding: string; purpose: string; account_id: string | null; consumed_at: Date | null; expires_at: Date }>(
      'SELECT binding, purpose, account_id, consumed_at, expires_at FROM webauthn_challenges WHERE challenge = $1', [c.challenge]);
    const row = rows[0];
    if (!row) return { ok: false, reason: 'unknown_challenge' };
    if (row.binding !== c.binding || row.purpose !== c.purpose || row.account_id !== c.accountId) return { ok: false, reason: 'challenge_mismatch' };
    if (row.consumed_at) return { ok: false, reason: 'challenge_used' };
    return { ok: false, reason: 'challenge_expired' };
  }

  async sweepChallenges(now: Date): Promise<number> {
    const r = await this.pool.query(`DELETE FROM webauthn_challenges WHERE expires_at < $1::timestamptz - interval '1 day'`, [now]);
    return r.rowCount ?? 0;
  }
}
