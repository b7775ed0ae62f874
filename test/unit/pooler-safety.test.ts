import fs from 'node:fs';
import path from 'node:path';

// Tsunagi runs behind PgBouncer in transaction pooling mode (test/e2e/pgbouncer.test.ts, docs/deploy.md):
// consecutive transactions of one pool client may run on different server connections, so nothing
// may live in a database session. This guards the source against what would break only there.

const srcDir = new URL('../../src', import.meta.url).pathname;

function sources(dir: string): Array<{ file: string; text: string }> {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sources(full);
    return e.name.endsWith('.ts') ? [{ file: path.relative(srcDir, full), text: fs.readFileSync(full, 'utf8') }] : [];
  });
}

const files = sources(srcDir);
const LISTEN_QUERY = /query\(\s*[`'"]\s*LISTEN\b/i;

function offenders(pattern: RegExp, except: string[] = []): string[] {
  return files.filter((f) => !except.includes(f.file) && pattern.test(f.text)).map((f) => f.file);
}

describe('no session state in Postgres (PgBouncer transaction pooling)', () => {
  it('reads the source it guards', () => {
    expect(files.map((f) => f.file)).toEqual(expect.arrayContaining(['db/migrate.ts', 'oidc/keys.ts', 'oidc/adapter/client-adapter.ts']));
    // The patterns below find what they look for (so an empty result means something).
    expect(offenders(/pg_advisory_xact_lock\(/)).toEqual(expect.arrayContaining(['db/migrate.ts', 'oidc/keys.ts']));
  });

  it('takes only transaction-level advisory locks (a session lock would stay on a server connection another client gets)', () => {
    expect(offenders(/pg_(try_)?advisory_lock(_shared)?\(|pg_advisory_unlock/)).toEqual([]);
  });

  it('uses no named prepared statements (PgBouncer before 1.21 cannot carry them; Debian 12 has 1.18)', () => {
    expect(offenders(/\.query(<[^>]*>)?\(\s*\{[^}]*\bname\s*:/s)).toEqual([]);
  });

  it('sets no session parameters and creates no temporary tables', () => {
    expect(offenders(/['"`]\s*SET\s+(SESSION\s+)?[a-z_.]+\s*(=|TO\b)/i)).toEqual([]);
    expect(offenders(/set_config\([^)]*,\s*false\s*\)/i)).toEqual([]);
    expect(offenders(/CREATE\s+(TEMP|TEMPORARY)\s+TABLE/i)).toEqual([]);
  });

  it('LISTENs only on the client cache\'s own connection (DATABASE_DIRECT_URL when set)', () => {
    expect(offenders(LISTEN_QUERY)).toEqual(['oidc/adapter/client-adapter.ts']);
  });
});
