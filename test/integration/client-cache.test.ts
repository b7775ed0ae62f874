import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Database } from '../../src/db/database.js';
import { ClientAdapter, clientCacheFor } from '../../src/oidc/adapter/client-adapter.js';
import { openTestDatabase } from '../support/harness.js';

// The in-memory copy of client metadata (src/oidc/adapter/client-adapter.ts): with a real Postgres a
// change made through another connection pool (another process: the CLI, a second server) reaches
// this process through NOTIFY; with the embedded database nothing is cached at all.
let db: Database;
beforeAll(async () => { db = await openTestDatabase(); });
afterAll(async () => { await db.close(); });

const metadata = (name: string) => ({ client_id: `cache-${randomUUID()}`, client_name: name, redirect_uris: ['https://rp.example.test/cb'] });

async function until(check: () => Promise<boolean>, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return check();
}

it('serves a changed or removed client from the table, never a stale copy, once the change is announced', async () => {
  const adapter = new ClientAdapter(db.pool);
  const cache = clientCacheFor(db.pool);
  if (!process.env.DATABASE_URL) {
    console.warn('client cache: embedded database, so the cache must stay off (no DATABASE_URL); checking that only');
    const m = metadata('one');
    await adapter.upsert(m.client_id, m);
    expect(await adapter.find(m.client_id)).toMatchObject({ client_name: 'one' });
    await db.pool.query(`UPDATE clients SET metadata = jsonb_set(metadata, '{client_name}', '"two"') WHERE client_id = $1`, [m.client_id]);
    expect(cache.enabled).toBe(false);
    expect(await adapter.find(m.client_id)).toMatchObject({ client_name: 'two' });
    return;
  }
  expect(await until(async () => cache.enabled)).toBe(true);
  const m = metadata('one');
  await adapter.upsert(m.client_id, m);
  // Our own announcement of the upsert comes back through LISTEN too: let it arrive before caching.
  await new Promise((r) => setTimeout(r, 300));
  expect(await adapter.find(m.client_id)).toMatchObject({ client_name: 'one' });
  expect(cache.get(m.client_id)).toMatchObject({ client_name: 'one' });

  // A silent change (no NOTIFY) is not seen while the copy lives: that is the cache working.
  await db.pool.query(`UPDATE clients SET metadata = jsonb_set(metadata, '{client_name}', '"silent"') WHERE client_id = $1`, [m.client_id]);
  expect(await adapter.find(m.client_id)).toMatchObject({ client_name: 'one' });

  // Another process renames the client and announces it, as ClientStore does.
  const other = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 1 });
  try {
    await other.query(`UPDATE clients SET metadata = jsonb_set(metadata, '{client_name}', '"two"') WHERE client_id = $1`, [m.client_id]);
    await other.query('SELECT pg_notify($1, $2)', ['tsunagi_clients', m.client_id]);
    expect(await until(async () => (await adapter.find(m.client_id))?.client_name === 'two')).toBe(true);

    await other.query('DELETE FROM clients WHERE client_id = $1', [m.client_id]);
    await other.query('SELECT pg_notify($1, $2)', ['tsunagi_clients', m.client_id]);
    expect(await until(async () => (await adapter.find(m.client_id)) === undefined)).toBe(true);
  } finally {
    await other.end();
  }

  // This process's own change is seen at once, without waiting for the notification.
  const n = metadata('three');
  await adapter.upsert(n.client_id, n);
  expect(await adapter.find(n.client_id)).toMatchObject({ client_name: 'three' });
  await adapter.destroy(n.client_id);
  expect(await adapter.find(n.client_id)).toBeUndefined();
});
