import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

/**
 * Environment for a Tsunagi (server or CLI) on a database no other test file writes to: a schema of
 * its own on Postgres (DATABASE_URL with a search_path), an embedded database in a folder of its
 * own otherwise. For tests that look at or rewrite whole tables.
 */
export interface IsolatedStore { env: Record<string, string | undefined>; dataDir: string; close(): Promise<void> }

export async function isolatedStore(): Promise<IsolatedStore> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsunagi-isolated-'));
  const removeDir = () => fs.rmSync(dataDir, { recursive: true, force: true });
  const url = process.env.DATABASE_URL;
  if (!url) return { env: { DATABASE_URL: undefined, DATA_DIR: dataDir }, dataDir, close: async () => removeDir() };
  const schema = `isolated_${randomUUID().replace(/-/g, '')}`;
  const admin = new pg.Pool({ connectionString: url, max: 1 });
  await admin.query(`CREATE SCHEMA ${schema}`);
  const isolated = new URL(url);
  isolated.searchParams.set('options', `-c search_path=${schema}`);
  return {
    env: { DATABASE_URL: isolated.href, DATA_DIR: dataDir },
    dataDir,
    async close() {
      await admin.query(`DROP SCHEMA ${schema} CASCADE`);
      await admin.end();
      removeDir();
    },
  };
}

