import { execFile } from 'node:child_process';
import path from 'node:path';
import type { RunningServer } from '../../src/server.js';
import { startTestServer } from './harness.js';
import { isolatedStore, type IsolatedStore } from './isolated-store.js';

/** The repository's root folder (where `npm run cli` runs). */
export const ROOT = path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), '../..');

/**
 * `npm run cli -- ...` as an operator types it: a child process through tsx, with the environment of
 * the test plus `env`, `input` on its stdin. Resolves with what it printed and its exit code.
 */
export async function cli(args: string[], env: Record<string, string | undefined>, input?: string): Promise<{ stdout: string; stderr: string; code: number }> {
  const child = execFile(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, NODE_OPTIONS: '', LOG_LEVEL: 'silent', ...env },
  });
  child.stdin?.end(input);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
  return { stdout, stderr, code };
}

/**
 * A server on a database of its own (so `clients lint` sees only what the test stored), and the
 * environment a CLI run needs to reach the same database, Redis and issuer.
 */
export async function startServerForCli(extraEnv: Record<string, string>): Promise<{
  store: IsolatedStore; server: RunningServer; issuer: string; env: Record<string, string | undefined>;
}> {
  const store = await isolatedStore();
  const server = await startTestServer({ ...store.env, ...extraEnv });
  const issuer = server.services.config.issuer;
  return { store, server, issuer, env: { ...store.env, ISSUER: issuer, REDIS_URL: process.env.REDIS_URL } };
}
