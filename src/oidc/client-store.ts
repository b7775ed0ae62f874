import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { AccountStore } from '../accounts/account-store.js';
import { notifyClientChanged } from './adapter/client-adapter.js';

export type ClientMetadata = Record<string, unknown> & { client_id?: string; client_secret?: string };

export class ClientNotFound extends Error {
  constructor(id: string) { super(`no client with id ${id}`); this.name = 'ClientNotFound'; }
}
export class ClientAlreadyExists extends Error {
  constructor(id: string) { super(`a client with id ${id} already exists`); this.name = 'ClientAlreadyExists'; }
}

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
  ) {}

  /** Stores a new client; returns the full metadata, including the generated secret (shown once). */
  async add(input: ClientMetadata): Promise<ClientMetadata> {
    const metadata: ClientMetadata = { ...input, client_id: input.client_id ?? newId() };
    if (this.needsSecret(metadata) && !metadata.client_secret) metadata.client_secret = newSecret();
    if (!this.needsSecret(metadata)) delete metadata.client_secret;
    await this.validate(metadata);
    const r = await this.pool.query(
      `INSERT INTO clients (client_id, metadata, source) VALUES ($1, $2, 'cli') ON CONFLICT (client_id) DO NOTHING`,
      [metadata.client_id, metadata]);
    if (r.rowCount !== 1) throw new ClientAlreadyExists(metadata.client_id as string);
    await notifyClientChanged(this.pool, metadata.client_id as string);
    await this.accounts.recordAuditEvent({ type: 'client_added', clientId: metadata.client_id as string, data: { client_name: metadata.client_name ?? null } });
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
    const { rows } = await this.pool.query<{ metadata: ClientMetadata }>(
      `UPDATE clients SET metadata = jsonb_set(metadata, '{client_secret}', to_jsonb($2::text)), updated_at = now()
       WHERE client_id = $1 AND metadata ? 'client_secret' RETURNING metadata`, [clientId, secret]);
    if (!rows[0]) {
      const exists = await this.pool.query('SELECT 1 FROM clients WHERE client_id = $1', [clientId]);
      if (!exists.rowCount) throw new ClientNotFound(clientId);
      throw new Error(`client ${clientId} is a public client and has no secret`);
    }
    await notifyClientChanged(this.pool, clientId);
    await this.accounts.recordAuditEvent({ type: 'client_secret_rotated', clientId });
    return secret;
  }
}
