import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Queryable } from '../db/database.js';
import type { Proof, ProofSubject } from './proof.js';

/**
 * What a later step of the same interaction is waiting for: 'signup' (confirm creating an account for
 * a proven email), 'upstream_return' (a Google/Apple answer checked by the callback, picked up by the
 * interaction's own browser), 'upstream_signup' / 'upstream_link' (an unlinked upstream identity waiting
 * for a confirmed signup, or for proof of owning the account it would be linked to), 'require_email'
 * (a finished sign-in held back until the account has a verified email the client requires).
 */
export type ProofPurpose = 'signup' | 'upstream_return' | 'upstream_signup' | 'upstream_link' | 'require_email';

export interface StoredProof { id: string; purpose: ProofPurpose; proof: Proof; expiresAt: Date }

interface Row {
  id: string; interaction_uid: string; purpose: ProofPurpose; method: Proof['method']; amr: string[];
  subject: ProofSubject; created_at: Date; expires_at: Date;
}

// Proofs parked between two requests of one interaction. Single use: `consume` hands a proof out once.
export class ProofStore {
  constructor(private readonly pool: pg.Pool) {}

  async park(purpose: ProofPurpose, proof: Proof, ttlSeconds: number): Promise<StoredProof> {
    const id = randomUUID();
    const expiresAt = new Date(proof.at.getTime() + ttlSeconds * 1000);
    await this.pool.query(
      `INSERT INTO interaction_proofs (id, interaction_uid, purpose, method, amr, subject, created_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [id, proof.interactionUid, purpose, proof.method, proof.amr, proof.subject, proof.at, expiresAt],
    );
    return { id, purpose, proof, expiresAt };
  }

  /** The newest unexpired, unconsumed proof parked for this interaction and purpose (to show, not to use). */
  async peek(interactionUid: string, purpose: ProofPurpose, now: Date): Promise<StoredProof | undefined> {
    const { rows } = await this.pool.query<Row>(
      `SELECT * FROM interaction_proofs WHERE interaction_uid = $1 AND purpose = $2 AND consumed_at IS NULL AND expires_at > $3
       ORDER BY created_at DESC LIMIT 1`,
      [interactionUid, purpose, now],
    );
    return rows[0] ? toStored(rows[0]) : undefined;
  }

  /** Takes the proof for this interaction and purpose; atomic, so a double submit gets it only once. */
  async consume(db: Queryable, interactionUid: string, purpose: ProofPurpose, now: Date): Promise<StoredProof | undefined> {
    const { rows } = await db.query<Row>(
      `UPDATE interaction_proofs SET consumed_at = $3
       WHERE id = (SELECT id FROM interaction_proofs
                   WHERE interaction_uid = $1 AND purpose = $2 AND consumed_at IS NULL AND expires_at > $3
                   ORDER BY created_at DESC LIMIT 1)
         AND consumed_at IS NULL
       RETURNING *`,
      [interactionUid, purpose, now],
    );
    return rows[0] ? toStored(rows[0]) : undefined;
  }

  async discard(interactionUid: string, purpose: ProofPurpose, now: Date): Promise<void> {
    await this.pool.query(
      'UPDATE interaction_proofs SET consumed_at = $3 WHERE interaction_uid = $1 AND purpose = $2 AND consumed_at IS NULL',
      [interactionUid, purpose, now],
    );
  }

  async sweep(now: Date): Promise<number> {
    const r = await this.pool.query(`DELETE FROM interaction_proofs WHERE expires_at < $1::timestamptz - interval '1 day'`, [now]);
    return r.rowCount ?? 0;
  }
}

function toStored(r: Row): StoredProof {
  return {
    id: r.id,
    purpose: r.purpose,
    expiresAt: r.expires_at,
    proof: { interactionUid: r.interaction_uid, method: r.method, amr: r.amr, subject: r.subject, at: r.created_at },
  };
}
