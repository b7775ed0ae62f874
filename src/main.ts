import v8 from 'node:v8';
import { ConfigError, loadConfig } from './config.js';
import { SchemaMismatch } from './db/migrate.js';
import { createLogger } from './logger.js';
import { startServer } from './server.js';

/**
 * When it allocates fast, V8 lets the heap grow to up to four times what is still live before a full
 * collection. Tsunagi allocates a lot for short-lived requests and keeps little (about 40 MB live
 * under the whole bench), so it sat at four times that. Twice the live set instead: peak RSS under
 * the bench went from 263 to 184 MB with throughput unchanged within the run-to-run noise
 * (bench/results). It is a factor, not a ceiling: a process that needs more memory still gets it.
 * A --heap-growing-percent on the node command line wins.
 */
const HEAP_GROWING_PERCENT = 100;
if (!process.execArgv.some((a) => /^--heap[-_]growing[-_]percent/.test(a))) v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  const running = await startServer(config, { log });
  log.info({ issuer: config.issuer, url: running.url, database: running.services.db.embedded ? `embedded (${config.dataDir})` : 'postgres', redis: config.redis?.topology ?? 'none' },
    `Tsunagi is listening on ${running.url} (issuer ${config.issuer})`);
  if (running.services.outbox) log.info(`development outbox: ${config.issuer}/dev/outbox`);

  const shutdown = (signal: string) => {
    log.info({ signal, drainSeconds: config.shutdownDrainSeconds }, 'shutting down');
    // Pools closing after the drain get a few seconds more; a process that still hangs is ended.
    const force = setTimeout(() => process.exit(1), (config.shutdownDrainSeconds + 5) * 1000);
    force.unref();
    running.close().then(() => process.exit(0), (err: unknown) => {
      log.error({ err }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  if (err instanceof SchemaMismatch) {
    process.stderr.write(`Tsunagi refuses to start: ${err.message}\n`);
    process.exit(SchemaMismatch.EXIT_CODE);
  }
  process.stderr.write(`Tsunagi failed to start: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
