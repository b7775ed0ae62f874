import pg from 'pg';

/** The little the link store needs from Postgres: queries, and transactions that roll back on error. */
export interface Sql {
  query<Row>(text: string, params?: unknown[]): Promise<Row[]>;
  transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** Postgres when DATABASE_URL is set; otherwise an embedded, in-memory PGlite (development and tests). */
export async function openSql(databaseUrl: string | undefined): Promise<Sql> {
  return databaseUrl ? postgres(databaseUrl) : embedded();
}

function postgres(databaseUrl: string): Sql {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 5 });
  pool.on('error', () => { /* an idle client's error surfaces on the next query */ });
  const on = (client: pg.Pool | pg.PoolClient): Sql => ({
    async query<Row>(text: string, params: unknown[] = []) {
      return (await client.query(text, params)).rows as Row[];
    },
    async transaction<T>(fn: (tx: Sql) => Promise<T>) {
      const tx = await pool.connect();
      try {
        await tx.query('BEGIN');
        const result = await fn(on(tx));
        await tx.query('COMMIT');
        return result;
      } catch (err) {
        await tx.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        tx.release();
      }
    },
    close: () => pool.end(),
  });
  return on(pool);
}

async function embedded(): Promise<Sql> {
  const { PGlite } = await import('@electric-sql/pglite');
  const db = await PGlite.create();
  type Queryable = Pick<typeof db, 'query'>;
  const on = (client: Queryable): Sql => ({
    async query<Row>(text: string, params: unknown[] = []) {
      return (await client.query<Row>(text, params)).rows;
    },
    transaction: <T>(fn: (tx: Sql) => Promise<T>) => db.transaction((tx) => fn(on(tx))),
    close: () => db.close(),
  });
  return on(db);
}
