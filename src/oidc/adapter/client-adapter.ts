import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { errors } from 'oidc-provider';
import { sessionUrlOf } from '../../db/database.js';
import { containsNul } from '../../failures/malformed-input.js';
import { currentRequestScope } from './request-scope.js';
import type { Adapter, AdapterPayload } from './types.js';

/** The channel every writer of the clients table notifies (the payload is the client_id). */
export const CLIENT_CHANGES_CHANNEL = 'tsunagi_clients';
const CACHE_TTL_MS = 60_000;
const CACHE_MAX_ENTRIES = 10_000;
const RELISTEN_DELAY_MS = 2_000;
// A LISTEN that hears nothing (through a transaction pooler) is tried again this much later.
const DEAF_RETRY_MS = 60_000;
const PROBE_TIMEOUT_MS = 5_000;
const PROBE_PREFIX = 'tsunagi-listen-probe:';

/**
 * Client metadata kept in memory, so the token endpoint does not read the clients table on every
 * request. Only while a LISTEN connection is up: every process that changes a client (this one, the
 * CLI, another server) sends NOTIFY tsunagi_clients, and each listener drops its copy. When the
 * listening connection is down, nothing is cached and every lookup reads the table, as before.
 * Entries also expire after a minute, so a change made by hand in SQL without NOTIFY is picked up.
 * Without a connection string (the embedded database: one backend behind a socket shared with the CLI)
 * there is no second connection to listen on, so nothing is cached.
 * The cache turns on only once a probe NOTIFY sent through the pool (the path every other process's
 * announcements take) has come back on the listening connection. Behind PgBouncer in transaction
 * mode a LISTEN succeeds but hears nothing (the server connection goes back to the pool after it):
 * then the probe never arrives and nothing is cached, unless DATABASE_DIRECT_URL gives the listener
 * a session of its own.
 */
export class ClientCache {
  private readonly entries = new Map<string, { payload: AdapterPayload; until: number }>();
  private listener: pg.Client | undefined;
  private listening = false;
  private closed = false;
  private retry: NodeJS.Timeout | undefined;
  /** Bumped on every invalidation: a read that started before one must not fill the cache. */
  private generation = 0;

  private probe: { payload: string; heard: () => void } | undefined;

  /** `announce` sends a NOTIFY the way other processes do (through the pool), to check the listener hears it. */
  constructor(private readonly connectionString: string | undefined, private readonly announce?: (payload: string) => Promise<unknown>) {
    if (connectionString) this.listen();
  }

  get enabled(): boolean { return this.listening; }

  get(id: string): AdapterPayload | undefined {
    if (!this.listening) return undefined;
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    if (entry.until < Date.now()) {
      this.entries.delete(id);
      return undefined;
    }
    return entry.payload;
  }

  /** Remembers what a read that began at `generation` found, unless an invalidation came since. */
  set(id: string, payload: AdapterPayload, generation: number): void {
    if (!this.listening || generation !== this.generation) return;
    if (this.entries.size >= CACHE_MAX_ENTRIES) this.entries.clear();
    this.entries.set(id, { payload, until: Date.now() + CACHE_TTL_MS });
  }

  currentGeneration(): number { return this.generation; }

  invalidate(id?: string): void {
    this.generation++;
    if (id === undefined) this.entries.clear();
    else this.entries.delete(id);
  }

  close(): void {
    this.closed = true;
    this.listening = false;
    this.entries.clear();
    if (this.retry) clearTimeout(this.retry);
    void this.listener?.end().catch(() => undefined);
  }

  private listen(): void {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.connectionString });
    this.listener = client;
    const lost = () => {
      if (this.listener !== client) return;
      this.listening = false;
      this.invalidate();
      this.listener = undefined;
      void client.end().catch(() => undefined);
      if (!this.closed) {
        this.retry = setTimeout(() => this.listen(), RELISTEN_DELAY_MS);
        this.retry.unref();
      }
    };
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', (n) => {
      if (n.channel !== CLIENT_CHANGES_CHANNEL) return;
      if (n.payload?.startsWith(PROBE_PREFIX)) {
        if (this.probe?.payload === n.payload) this.probe.heard();
        return;
      }
      this.invalidate(n.payload || undefined);
    });
    client.connect()
      .then(() => {
        // The listening connection must not keep the process alive on shutdown.
        (client as unknown as { connection?: { stream?: { unref?: () => void } } }).connection?.stream?.unref?.();
        return client.query(`LISTEN ${CLIENT_CHANGES_CHANNEL}`);
      })
      .then(() => this.hears())
      .then((heard) => {
        if (this.listener !== client || this.closed) return;
        if (!heard) {
          // A deaf listener (a transaction pooler in between): stay off, look again much later.
          this.listener = undefined;
          void client.end().catch(() => undefined);
          this.retry = setTimeout(() => this.listen(), DEAF_RETRY_MS);
          this.retry.unref();
          return;
        }
        // Whatever changed while nobody listened is unknown: start empty.
        this.invalidate();
        this.listening = true;
      })
      .catch(lost);
  }

  /** True once a NOTIFY sent through the pool has reached the listening connection. */
  private async hears(): Promise<boolean> {
    if (!this.announce) return true;
    const payload = `${PROBE_PREFIX}${randomUUID()}`;
    let timer: NodeJS.Timeout | undefined;
    const heard = new Promise<boolean>((resolve) => {
      this.probe = { payload, heard: () => resolve(true) };
      timer = setTimeout(() => resolve(false), PROBE_TIMEOUT_MS);
      timer.unref();
    });
    try {
      await this.announce(payload);
      return await heard;
    } finally {
      clearTimeout(timer);
      this.probe = undefined;
    }
  }
}

const caches = new WeakMap<pg.Pool, ClientCache>();

/** The one client cache of a pool, shared by the adapter and the ClientStore (which invalidates it). */
export function clientCacheFor(pool: pg.Pool): ClientCache {
  let cache = caches.get(pool);
  if (!cache) {
    cache = new ClientCache(sessionUrlOf(pool), (payload) => pool.query('SELECT pg_notify($1, $2)', [CLIENT_CHANGES_CHANNEL, payload]));
    caches.set(pool, cache);
    // Closing the pool (shutdown) closes the listener too.
    const end = pool.end.bind(pool);
    const ended = cache;
    pool.end = (() => { ended.close(); return end(); }) as typeof pool.end;
  }
  return cache;
}

/** Tells every process's cache (this one's at once) that a client changed. */
export async function notifyClientChanged(pool: pg.Pool, clientId: string): Promise<void> {
  // A process that never looked a client up (the CLI) has no cache and opens no listener for this.
  caches.get(pool)?.invalidate(clientId);
  await pool.query('SELECT pg_notify($1, $2)', [CLIENT_CHANGES_CHANNEL, clientId]);
}

/** oidc-provider's Client model on the clients table (dynamic registration writes here too). */
export class ClientAdapter implements Adapter {
  private readonly cache: ClientCache;

  constructor(private readonly pool: pg.Pool) {
    this.cache = clientCacheFor(pool);
  }

  async upsert(id: string, payload: AdapterPayload): Promise<void> {
    if (id.includes('\0') || containsNul(payload)) throw new errors.InvalidClientMetadata('client metadata must not contain NUL characters');
    currentRequestScope()?.forgetModel('Client');
    await this.pool.query(
      `INSERT INTO clients (client_id, metadata, source) VALUES ($1, $2, 'dynamic')
       ON CONFLICT (client_id) DO UPDATE SET metadata = EXCLUDED.metadata, updated_at = now()`,
      [id, payload],
    );
    await notifyClientChanged(this.pool, id);
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    // Anyone can send a client_id; one holding a NUL names no client (and Postgres would refuse it).
    if (id.includes('\0')) return undefined;
    const cached = this.cache.get(id);
    if (cached) return cached;
    // Without the cache (no LISTEN connection, the embedded database), still once per request.
    const scope = currentRequestScope();
    const known = scope?.row('Client', 'id', id);
    if (known) return (await known)?.payload;
    const reading = this.read(id);
    scope?.rememberRow('Client', 'id', id, reading.then((metadata) => metadata && { payload: metadata, consumed_at: null }));
    return reading;
  }

  private async read(id: string): Promise<AdapterPayload | undefined> {
    const generation = this.cache.currentGeneration();
    const { rows } = await this.pool.query<{ metadata: AdapterPayload }>('SELECT metadata FROM clients WHERE client_id = $1', [id]);
    const found = rows[0]?.metadata;
    // Unknown ids are not remembered: anyone can send them.
    if (found) this.cache.set(id, found, generation);
    return found;
  }

  async destroy(id: string): Promise<void> {
    if (id.includes('\0')) return;
    currentRequestScope()?.forgetModel('Client');
    await this.pool.query('DELETE FROM clients WHERE client_id = $1', [id]);
    await notifyClientChanged(this.pool, id);
  }

  async findByUid(): Promise<undefined> { return undefined; }
  async findByUserCode(): Promise<undefined> { return undefined; }
  async consume(): Promise<void> { throw new Error('clients are not consumable'); }
  async revokeByGrantId(): Promise<void> { /* clients have no grants */ }
}
