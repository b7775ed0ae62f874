import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { errors } from 'oidc-provider';
import type { AccountStore } from '../accounts/account-store.js';
import type { Queryable } from '../db/database.js';
import { isSealed } from '../secrets/master-key.js';
import { notifyClientChanged } from './adapter/client-adapter.js';
import {
  ADMIN_READ_SCOPE, ADMIN_WRITE_SCOPE, assertClientRules, clientRuleViolations, type ClientPolicy, type ClientRuleViolation,
} from './client-metadata.js';
import { isHashedSecret, type ClientSecretVault } from './client-secrets.js';

export type ClientMetadata = Record<string, unknown> & { client_id?: string; client_secret?: string };

export class ClientNotFound extends Error {
  constructor(id: string) { super(`no client with id ${id}`); this.name = 'ClientNotFound'; }
}
export class ClientAlreadyExists extends Error {
  constructor(id: string) { super(`a client with id ${id} already exists`); this.name = 'ClientAlreadyExists'; }
}

export interface ClientLintFinding { clientId: string; clientName: string | undefined; source: string; violations: ClientRuleViolation[] }

/** A secret the operator chooses must be as hard to guess as a generated one (it is stored hashed). */
const MIN_CHOSEN_SECRET_LENGTH = 32;

/** `clients add --admin read|write`: an Admin API client, reading only or also changing accounts. */
export type AdminAccess = 'read' | 'write';

export interface ClientSummary { clientId: string; clientName: string | undefined; source: string; firstParty: boolean; createdAt: Date }

const newId = () => randomBytes(16).toString('base64url');
const newSecret = () => randomBytes(32).toString('base64url');

/** Client registrations for the CLI: validated by oidc-provider itself before they are stored. */
export class ClientStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly validate: (metadata: ClientMetadata) => Promise<void>,
    private readonly needsSecret: (metadata: ClientMetadata) => boolean,
    private readonly accounts: AccountStore,
    private readonly secrets: ClientSecretVault,
    private readonly policy: ClientPolicy,
  ) {}

  /**
   * Stores a new client; returns the full metadata, including the generated secret (shown once: the
   * table keeps it hashed, or sealed when oidc-provider needs it as a key).
   */
  async add(input: ClientMetadata, options: { admin?: AdminAccess } = {}): Promise<ClientMetadata> {
    const metadata: ClientMetadata = { ...input, client_id: input.client_id ?? newId() };
    if (options.admin) {
      // An Admin API client acts as itself, with client credentials, and has exactly the admin scopes.
      Object.assign(metadata, {
        grant_types: input.grant_types ?? ['client_credentials'], response_types: input.response_types ?? [], redirect_uris: input.redirect_uris ?? [],
        scope: options.admin === 'write' ? `${ADMIN_READ_SCOPE} ${ADMIN_WRITE_SCOPE}` : ADMIN_READ_SCOPE,
      });
    }
    assertClientRules(metadata, { ...this.policy, adminApi: Boolean(options.admin) });
    if (this.needsSecret(metadata) && !metadata.client_secret) metadata.client_secret = newSecret();
    if (!this.needsSecret(metadata)) delete metadata.client_secret;
    const chosen = metadata.client_secret;
    if (chosen !== undefined && (typeof chosen !== 'string' || chosen.length < MIN_CHOSEN_SECRET_LENGTH || isHashedSecret(chosen) || isSealed(chosen))) {
      throw new errors.InvalidClientMetadata(`client_secret must be at least ${MIN_CHOSEN_SECRET_LENGTH} random characters (leave it out to have one generated)`);
    }
    await this.validate(metadata);
    const r = await this.pool.query(
      `INSERT INTO clients (client_id, metadata, source) VALUES ($1, $2, $3) ON CONFLICT (client_id) DO NOTHING`,
      [metadata.client_id, this.secrets.toStored(metadata), options.admin ? 'admin' : 'cli']);
    if (r.rowCount !== 1) throw new ClientAlreadyExists(metadata.client_id as string);
    await notifyClientChanged(this.pool, metadata.client_id as string);
    await this.accounts.recordAuditEvent({
      type: 'client_added', clientId: metadata.client_id as string,
      data: { client_name: metadata.client_name ?? null, ...(options.admin ? { admin: options.admin } : {}) },
    });
    return metadata;
  }

  async list(): Promise<ClientSummary[]> {
    const { rows } = await this.pool.query<{ client_id: string; metadata: ClientMetadata; source: string; created_at: Date }>(
      'SELECT client_id, metadata, source, created_at FROM clients ORDER BY created_at');
    return rows.map((r) => ({
      clientId: r.client_id, clientName: r.metadata.client_name as string | undefined, source: r.source,
      firstParty: r.metadata.first_party === true, createdAt: r.created_at,
    }));
  }

  /** The stored metadata with the secret masked. */
  async show(clientId: string): Promise<ClientMetadata> {
    const { rows } = await this.pool.query<{ metadata: ClientMetadata }>('SELECT metadata FROM clients WHERE client_id = $1', [clientId]);
    const metadata = rows[0]?.metadata;
    if (!metadata) throw new ClientNotFound(clientId);
    return metadata.client_secret ? { ...metadata, client_secret: '********' } : metadata;
  }

  /** Removes the client and everything issued to it. */
  async remove(clientId: string): Promise<void> {
    const r = await this.pool.query('DELETE FROM clients WHERE client_id = $1', [clientId]);
    if (r.rowCount !== 1) throw new ClientNotFound(clientId);
    await notifyClientChanged(this.pool, clientId);
    await this.pool.query(`DELETE FROM oidc_payloads WHERE payload->>'clientId' = $1`, [clientId]);
    await this.accounts.recordAuditEvent({ type: 'client_removed', clientId });
  }

  async rotateSecret(clientId: string): Promise<string> {
    const secret = newSecret();
    const current = await this.pool.query<{ metadata: ClientMetadata }>('SELECT metadata FROM clients WHERE client_id = $1', [clientId]);
    const metadata = current.rows[0]?.metadata;
    if (!metadata) throw new ClientNotFound(clientId);
    // Hashed or sealed as this client's metadata requires (client_secret_jwt keeps a sealed secret).
    const stored = this.secrets.toStored({ ...metadata, client_id: clientId, client_secret: secret }).client_secret;
    const { rows } = await this.pool.query<{ metadata: ClientMetadata }>(
      `UPDATE clients SET metadata = jsonb_set(metadata, '{client_secret}', to_jsonb($2::text)), updated_at = now()
       WHERE client_id = $1 AND metadata ? 'client_secret' RETURNING metadata`, [clientId, stored]);
    if (!rows[0]) throw new Error(`client ${clientId} is a public client and has no secret`);
    await notifyClientChanged(this.pool, clientId);
    await this.accounts.recordAuditEvent({ type: 'client_secret_rotated', clientId });
    return secret;
  }

  /** Every stored client that breaks a registration rule (clients registered before the rule, or edited by hand). */
  async lint(): Promise<ClientLintFinding[]> {
    const { rows } = await this.pool.query<{ client_id: string; metadata: ClientMetadata; source: string }>(
      'SELECT client_id, metadata, source FROM clients ORDER BY created_at, client_id');
    return rows
      .map((r) => ({
        clientId: r.client_id, clientName: r.metadata.client_name as string | undefined, source: r.source,
        violations: clientRuleViolations({ ...r.metadata, client_id: r.client_id }, { ...this.policy, adminApi: r.source === 'admin' }),
      }))
      .filter((f) => f.violations.length > 0);
  }

  /**
   * Hashes or seals client secrets still in plain text (rows from before secrets were kept at rest
   * this way), and with `reseal` re-seals those sealed with an older master key. Each row changes
   * only if nobody changed it meanwhile. Returns how many rows changed.
   */
  async sealSecrets(db: Queryable, reseal: boolean): Promise<number> {
    const { rows } = await db.query<{ client_id: string; metadata: ClientMetadata }>(
      `SELECT client_id, metadata FROM clients WHERE metadata ? 'client_secret'
       ${reseal ? '' : `AND metadata->>'client_secret' NOT LIKE 'hmac-sha256:%' AND metadata->>'client_secret' NOT LIKE 'sealed:v1:%'`}`);
    let changed = 0;
    for (const { client_id: clientId, metadata } of rows) {
      const stored = this.secrets.toStored({ ...metadata, client_id: clientId }, reseal);
      if (stored.client_secret === metadata.client_secret) continue;
      const r = await db.query(`UPDATE clients SET metadata = jsonb_set(metadata, '{client_secret}', to_jsonb($2::text)), updated_at = now()
        WHERE client_id = $1 AND metadata->>'client_secret' = $3`, [clientId, stored.client_secret, metadata.client_secret]);
      if (r.rowCount) {
        changed += 1;
        await notifyClientChanged(this.pool, clientId);
      }
    }
    return changed;
  }
}
