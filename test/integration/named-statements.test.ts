import pg from 'pg';
import { nameStatements } from '../../src/db/database.js';

const DATABASE_URL = process.env.DATABASE_URL;
if (!DATABASE_URL) console.warn('DATABASE_URL not set: named prepared statements (a real Postgres only) were NOT tested');

/**
 * Pool queries run as named prepared statements (src/db/database.ts nameStatements). One connection
 * (max 1) so the test sees the session the statements live in.
 */
(DATABASE_URL ? describe : describe.skip)('named prepared statements', () => {
  let pool: pg.Pool;
  let refusals: unknown[];
  beforeEach(() => {
    pool = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
    refusals = [];
    nameStatements(pool, { onRefused: (err) => refusals.push(err) });
  });
  afterEach(async () => { await pool.end(); });

  const prepared = async () => (await pool.query<{ name: string; statement: string }>(
    "SELECT name, statement FROM pg_prepared_statements WHERE name LIKE 'tsunagi\\_%' ORDER BY statement")).rows;

  it('prepares each text once per connection under a name derived from the text', async () => {
    for (let i = 0; i < 3; i++) expect((await pool.query<{ n: number }>('SELECT $1::int + 1 AS n', [i])).rows).toEqual([{ n: i + 1 }]);
    const rows = await prepared();
    const mine = rows.filter((r) => r.statement === 'SELECT $1::int + 1 AS n');
    expect(mine).toHaveLength(1);
    expect(mine[0]?.name).toMatch(/^tsunagi_[A-Za-z0-9_-]{24}$/);
    expect(refusals).toEqual([]);
  });

  it('answers a query whose statement the server lost (a transaction pooler), then goes on unnamed', async () => {
    expect((await pool.query('SELECT $1::text AS v', ['a'])).rows).toEqual([{ v: 'a' }]);
    // As PgBouncer in transaction mode does: the next use lands where the statement does not exist.
    await pool.query('DEALLOCATE ALL');
    expect((await pool.query('SELECT $1::text AS v', ['b'])).rows).toEqual([{ v: 'b' }]);
    expect(refusals).toHaveLength(1);
    expect((refusals[0] as { code?: string }).code).toBe('26000');
    // From then on nothing is prepared on this pool.
    expect((await pool.query('SELECT $1::text AS w', ['c'])).rows).toEqual([{ w: 'c' }]);
    expect(await prepared()).toEqual([]);
    expect(refusals).toHaveLength(1);
  });

  // Real tables (not temporary ones): node-postgres' pool replaces a connection after any failed
  // query, and a temporary table would go with it.
  const table = `named_statements_${process.pid}_${Date.now().toString(36)}`;
  afterEach(async () => {
    const cleanup = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
    await cleanup.query(`DROP TABLE IF EXISTS ${table}`);
    await cleanup.end();
  });

  it('answers a query whose table changed shape under its prepared statement (a migration by another node)', async () => {
    await pool.query(`CREATE TABLE ${table} (a int)`);
    await pool.query(`INSERT INTO ${table} VALUES (1)`);
    expect((await pool.query(`SELECT * FROM ${table}`)).rows).toEqual([{ a: 1 }]);
    const other = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
    await other.query(`ALTER TABLE ${table} ADD COLUMN b text DEFAULT 'x'`);
    await other.end();
    expect((await pool.query(`SELECT * FROM ${table}`)).rows).toEqual([{ a: 1, b: 'x' }]);
    // Not a pooler: the pool keeps naming its statements.
    expect(refusals).toEqual([]);
    expect((await prepared()).length).toBeGreaterThan(0);
  });

  it('passes an error of the query itself through unchanged, and runs it once', async () => {
    await pool.query(`CREATE TABLE ${table} (a int PRIMARY KEY)`);
    await pool.query(`INSERT INTO ${table} VALUES ($1)`, [1]);
    await expect(pool.query(`INSERT INTO ${table} VALUES ($1)`, [1])).rejects.toMatchObject({ code: '23505' });
    expect((await pool.query(`SELECT count(*)::int AS n FROM ${table}`)).rows).toEqual([{ n: 1 }]);
    expect(refusals).toEqual([]);
  });
});
