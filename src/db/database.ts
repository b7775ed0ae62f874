import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { DependencyUnavailable, isDatabaseUnavailable } from '../failures/dependency.js';
import { outsideRequests } from './outside-requests.js';

export type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

export interface Database {
  pool: pg.Pool;
  /** true when running on the embedded PGlite database (one connection, development only). */
  embedded: boolean;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  databaseUrl: string | undefined;
  /**
   * A direct session connection to the same database, when databaseUrl goes through a transaction
   * pooler (PgBouncer in transaction mode hands each transaction to any server connection, so
   * LISTEN there hears nothing). Used for what needs a session: LISTEN.
   */
  directUrl?: string | undefined;
  /** Folder for the embedded database; 'memory://' keeps it in memory (tests). */
  dataDir: string;
  poolMax: number;
  /** Pool queries as named prepared statements (a real Postgres only; see nameStatements). */
  namedStatements?: NamedStatementOptions | undefined;
  /**
   * Deadlines for a real Postgres (the embedded one runs in this process and cannot hang on its own).
   * Unset (migrations, the CLI): no deadline.
   */
  timeouts?: DatabaseTimeouts | undefined;
}

export interface DatabaseTimeouts {
  /** Waiting for a pooled connection, or opening a new one. */
  connectTimeoutMs: number;
  /** One query: enforced by the client (a frozen server) and by the server (statement_timeout). */
  queryTimeoutMs: number;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.databaseUrl) {
    const t = options.timeouts;
    const pool = new pg.Pool({
      connectionString: options.databaseUrl,
      max: options.poolMax,
      keepAlive: true,
      ...(t ? {
        connectionTimeoutMillis: t.connectTimeoutMs,
        query_timeout: t.queryTimeoutMs,
        statement_timeout: t.queryTimeoutMs,
        // A transaction left open by a client that vanished does not hold its locks for long.
        idle_in_transaction_session_timeout: Math.max(10_000, t.queryTimeoutMs * 2),
      } : {}),
    });
    pool.on('error', () => { /* idle client errors surface on the next query */ });
    connectOutsideRequests(pool);
    if (options.namedStatements) nameStatements(pool, options.namedStatements);
    sessionUrls.set(pool, options.directUrl ?? options.databaseUrl);
    if (t) reportUnavailability(pool);
    return { pool, embedded: false, close: () => pool.end() };
  }
  return openEmbeddedDatabase(options.dataDir);
}

/**
 * A pool opens its connections when a query needs one, so most are opened while some request is
 * being served; node-postgres also keeps the first query's callback of each connection, and the
 * pool starts its idle timer from whoever releases a client. Connections, queries and releases are
 * therefore set up outside the request (outside-requests.ts).
 */
export function connectOutsideRequests(pool: pg.Pool): void {
  type Fn = (...args: unknown[]) => unknown;
  const patched = pool as unknown as Record<'connect' | 'query', Fn>;
  // A client given back starts the pool's idle timer (idleTimeoutMillis), which would keep the
  // context of whoever gave it back.
  const releasedOutside = (client: unknown) => {
    if (client && typeof (client as { release?: unknown }).release === 'function') {
      const c = client as { release: Fn };
      const release = c.release;
      c.release = (...a: unknown[]) => outsideRequests(() => release.apply(c, a));
    }
    return client;
  };
  const connect = patched.connect.bind(pool);
  patched.connect = (...args: unknown[]) => {
    const callback = args[0];
    if (typeof callback === 'function') {
      return outsideRequests(() => connect((err: unknown, client: unknown, done: unknown) => (callback as Fn)(err, releasedOutside(client), done)));
    }
    return (outsideRequests(() => connect()) as Promise<unknown>).then(releasedOutside);
  };
  const query = patched.query.bind(pool);
  patched.query = (...args: unknown[]) => outsideRequests(() => query(...args));
}

export interface NamedStatementOptions {
  /** Called once when Postgres (or a pooler in front of it) refuses named statements and the pool stops using them. */
  onRefused?: (err: unknown) => void;
}

// A pooler that hands each transaction to any server connection loses a statement prepared on
// another one: "does not exist" (26000) on use, "already exists" (42P05) on a second prepare.
const STATEMENT_LOST = new Set(['26000', '42P05']);
// A prepared statement whose tables changed under it (a migration by a newer node) so that its
// result type differs: Postgres refuses it once; unnamed, the query is planned afresh.
const planChanged = (code: unknown, message: unknown) => code === '0A000' && typeof message === 'string' && /cached plan must not change result type/.test(message);
// The texts given names, per pool: SQL in the code is a fixed set; past this many, a text that is
// built from data (it should not be) runs unnamed rather than filling every connection's memory.
const MAX_NAMED_TEXTS = 2000;

/**
 * Each pool query (pool.query with SQL text and values; not a transaction's) runs as a named
 * prepared statement, so Postgres parses and plans it once per connection instead of on every call:
 * under the bench that halved Postgres' CPU per request and raised refresh, userinfo and
 * introspection by 40-100% (bench/results). The name is a hash of the text, so one name always
 * means one text on any server connection. Refusals are not errors the caller sees: a statement a
 * pooler lost, or one whose plan no longer fits, was not executed, and runs again unnamed. A pooler
 * that loses statements turns them off for this pool for good.
 */
export function nameStatements(pool: pg.Pool, options: NamedStatementOptions = {}): void {
  type Fn = (...args: unknown[]) => Promise<unknown>;
  const patched = pool as unknown as { query: Fn };
  const query = patched.query.bind(pool);
  const names = new Map<string, string>();
  let refused = false;
  const nameOf = (text: string): string | undefined => {
    let name = names.get(text);
    if (!name && names.size < MAX_NAMED_TEXTS) {
      name = `tsunagi_${createHash('sha256').update(text).digest('base64url').slice(0, 24)}`;
      names.set(text, name);
    }
    return name;
  };
  patched.query = async (...args: unknown[]) => {
    const [text, values] = args;
    const name = !refused && typeof text === 'string' && args.length <= 2 && (values === undefined || Array.isArray(values)) ? nameOf(text) : undefined;
    if (!name) return query(...args);
    try {
      return await query({ name, text, values });
    } catch (err) {
      const { code, message } = err as { code?: unknown; message?: unknown };
      if (planChanged(code, message)) return query(text, values);
      if (typeof code !== 'string' || !STATEMENT_LOST.has(code)) throw err;
      if (!refused) {
        refused = true;
        options.onRefused?.(err);
      }
      return query(text, values);
    }
  };
}

const sessionUrls = new WeakMap<pg.Pool, string>();

/**
 * Where a connection that keeps session state (LISTEN) goes for this pool: the direct URL when the
 * pool goes through a pooler, else the pool's own. Undefined for the embedded database (one backend).
 */
export function sessionUrlOf(pool: pg.Pool): string | undefined {
  return sessionUrls.get(pool) ?? (pool as unknown as { options?: { connectionString?: string } }).options?.connectionString;
}

// PGlite is one Postgres backend. It is served over a Unix socket so the same `pg` code path serves
// both modes. The pool stays at max 1: the socket server multiplexes connections onto the one
// backend. Its queue keeps a connection's open transaction to itself, which is what lets a second
// process (the CLI while the server runs) share the data folder through the same socket.
async function openEmbeddedDatabase(dataDir: string): Promise<Database> {
  const inMemory = dataDir === 'memory://';
  const socketDir = inMemory
    ? fs.mkdtempSync(path.join(os.tmpdir(), 'tsunagi-pg-'))
    : path.join(os.tmpdir(), `tsunagi-pg-${createHash('sha256').update(path.resolve(dataDir)).digest('hex').slice(0, 16)}`);
  const socketPath = path.join(socketDir, '.s.PGSQL.5432');
  const poolFor = () => {
    const pool = new pg.Pool({ host: socketDir, port: 5432, user: 'postgres', database: 'postgres', max: 1 });
    pool.on('error', () => { /* surfaced on the next query */ });
    connectOutsideRequests(pool);
    return pool;
  };

  if (!inMemory && (await socketAnswers(socketPath))) {
    const pool = poolFor();
    return { pool, embedded: true, close: () => pool.end() };
  }

  const { PGlite } = await import('@electric-sql/pglite');
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
  let db;
  if (inMemory) {
    db = await PGlite.create();
  } else {
    const dir = path.resolve(dataDir, 'pg');
    fs.mkdirSync(dir, { recursive: true });
    db = await PGlite.create(dir);
    fs.mkdirSync(socketDir, { recursive: true, mode: 0o700 });
    fs.rmSync(socketPath, { force: true }); // left behind by a process that did not stop cleanly
  }
  const server = new PGLiteSocketServer({ db, path: socketPath, maxConnections: 8 });
  await server.start();
  const pool = poolFor();
  return {
    pool,
    embedded: true,
    async close() {
      await pool.end();
      await server.stop();
      await db.close();
      fs.rmSync(inMemory ? socketDir : socketPath, { recursive: true, force: true });
    },
  };
}

function socketAnswers(socketPath: string): Promise<boolean> {
  if (!fs.existsSync(socketPath)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

type AnyCall = (...args: unknown[]) => unknown;
const guardedClients = new WeakSet<object>();

function asUnavailable(err: unknown): unknown {
  return isDatabaseUnavailable(err) ? new DependencyUnavailable('database', err instanceof Error ? err.message : String(err), { cause: err }) : err;
}

// Only the promise forms are translated: pg-pool itself calls connect(callback) and client.query(text, values, callback).
function translateRejections(target: object, method: 'query' | 'connect', onResolved?: (value: unknown) => unknown): void {
  const original = (target as Record<string, AnyCall>)[method]?.bind(target) as AnyCall;
  (target as Record<string, AnyCall>)[method] = (...args: unknown[]) => {
    const result = original(...args);
    if (!(result instanceof Promise)) return result;
    return result.then(onResolved, (err: unknown) => { throw asUnavailable(err); });
  };
}

/**
 * Turns a database that is down or too slow (refused, timed out, connection lost) into
 * DependencyUnavailable('database') on every path Tsunagi uses: pool.query and the clients of
 * pool.connect() (transactions). Query errors (constraint violations, syntax) pass through.
 */
function reportUnavailability(pool: pg.Pool): void {
  translateRejections(pool, 'query');
  translateRejections(pool, 'connect', (client) => {
    if (typeof client === 'object' && client !== null && !guardedClients.has(client)) {
      guardedClients.add(client);
      translateRejections(client, 'query');
    }
    return client;
  });
}

/** Runs fn in one transaction on one connection; rolls back on any error. */
export async function withTransaction<T>(pool: pg.Pool, fn: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let result: T;
  try {
    await client.query('BEGIN');
    result = await fn(client);
    await client.query('COMMIT');
  } catch (err) {
    // A connection that was lost or timed out is dropped, not rolled back (on a frozen server ROLLBACK
    // would wait out a second deadline; Postgres rolls back a transaction whose connection closes).
    // One whose ROLLBACK fails is not given back to the pool either.
    const broken = err instanceof DependencyUnavailable || await client.query('ROLLBACK').then(() => false, () => true);
    client.release(broken);
    throw err;
  }
  client.release();
  return result;
}

/** Postgres error code for a unique-constraint violation. */
export function isUniqueViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === '23505';
}
