import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

export interface Database {
  pool: pg.Pool;
  /** true when running on the embedded PGlite database (one connection, development only). */
  embedded: boolean;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  databaseUrl: string | undefined;
  /** Folder for the embedded database; 'memory://' keeps it in memory (tests). */
  dataDir: string;
  poolMax: number;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.databaseUrl) {
    const pool = new pg.Pool({ connectionString: options.databaseUrl, max: options.poolMax });
    pool.on('error', () => { /* idle client errors surface on the next query */ });
    return { pool, embedded: false, close: () => pool.end() };
  }
  return openEmbeddedDatabase(options.dataDir);
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

/** Runs fn in one transaction on one connection; rolls back on any error. */
export async function withTransaction<T>(pool: pg.Pool, fn: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** Postgres error code for a unique-constraint violation. */
export function isUniqueViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === '23505';
}
