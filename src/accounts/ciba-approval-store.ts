import { createHash } from 'node:crypto';
import type pg from 'pg';

export type CibaChannel = 'email' | 'sms';
export type CibaDecision = 'approved' | 'refused';

/** The approval link of one backchannel authentication request (method 2 for LINE mini-apps). */
export interface CibaApproval {
  authReqId: string;
  accountId: string;
  clientId: string;
  clientName: string;
  bindingMessage: string;
  scope: string;
  channel: CibaChannel;
  createdAt: Date;
  expiresAt: Date;
  decidedAt: Date | null;
  decision: CibaDecision | null;
}

interface Row {
  auth_req_id: string; account_id: string; client_id: string; client_name: string; binding_message: string; scope: string;
  channel: CibaChannel; created_at: Date; expires_at: Date; decided_at: Date | null; decision: CibaDecision | null;
}

/** Only the hash of an approval link's secret is stored: a database copy opens no approval page. */
export function approvalLinkHash(secret: string): string {
  return createHash('sha256').update(`ciba-approval\0${secret}`).digest('base64url');
}

const toApproval = (r: Row): CibaApproval => ({
  authReqId: r.auth_req_id, accountId: r.account_id, clientId: r.client_id, clientName: r.client_name, bindingMessage: r.binding_message,
  scope: r.scope, channel: r.channel, createdAt: r.created_at, expiresAt: r.expires_at, decidedAt: r.decided_at, decision: r.decision,
});

// All SQL of CIBA approval links. The link secret itself is never stored, only its hash.
export class CibaApprovalStore {
  constructor(private readonly pool: pg.Pool) {}

  async create(approval: Omit<CibaApproval, 'decidedAt' | 'decision'> & { linkHash: string }): Promise<void> {
    await this.pool.query('DELETE FROM ciba_approvals WHERE expires_at < now() - interval \'1 day\'');
    await this.pool.query(
      `INSERT INTO ciba_approvals (auth_req_id, account_id, client_id, client_name, binding_message, scope, channel, link_hash, created_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [approval.authReqId, approval.accountId, approval.clientId, approval.clientName, approval.bindingMessage, approval.scope,
        approval.channel, approval.linkHash, approval.createdAt, approval.expiresAt],
    );
  }

  async findByLinkHash(linkHash: string): Promise<CibaApproval | undefined> {
    const { rows } = await this.pool.query<Row>('SELECT * FROM ciba_approvals WHERE link_hash = $1', [linkHash]);
    return rows[0] ? toApproval(rows[0]) : undefined;
  }

  /**
   * Records the person's decision once: of two submissions (two tabs, a replayed form), exactly one
   * wins; an expired link or another account's link changes nothing.
   */
  async decide(linkHash: string, accountId: string, decision: CibaDecision, now: Date): Promise<CibaApproval | undefined> {
    const { rows } = await this.pool.query<Row>(
      `UPDATE ciba_approvals SET decided_at = $4, decision = $3
       WHERE link_hash = $1 AND account_id = $2 AND decided_at IS NULL AND expires_at > $4 RETURNING *`,
      [linkHash, accountId, decision, now],
    );
    return rows[0] ? toApproval(rows[0]) : undefined;
  }
}
