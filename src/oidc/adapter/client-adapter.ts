import type pg from 'pg';
import type { Adapter, AdapterPayload } from './types.js';

/** oidc-provider's Client model on the clients table (dynamic registration writes here too). */
export class ClientAdapter implements Adapter {
  constructor(private readonly pool: pg.Pool) {}

  async upsert(id: string, payload: AdapterPayload): Promise<void> {
    await this.pool.query(
      `INSERT INTO clients (client_id, metadata, source) VALUES ($1, $2, 'dynamic')
       ON CONFLICT (client_id) DO UPDATE SET metadata = EXCLUDED.metadata, updated_at = now()`,
      [id, payload],
    );
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    const { rows } = await this.pool.query<{ metadata: AdapterPayload }>('SELECT metadata FROM clients WHERE client_id = $1', [id]);
    return rows[0]?.metadata;
  }

  async destroy(id: string): Promise<void> {
    await this.pool.query('DELETE FROM clients WHERE client_id = $1', [id]);
  }

  async findByUid(): Promise<undefined> { return undefined; }
  async findByUserCode(): Promise<undefined> { return undefined; }
  async consume(): Promise<void> { throw new Error('clients are not consumable'); }
  async revokeByGrantId(): Promise<void> { /* clients have no grants */ }
}
