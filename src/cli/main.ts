import fs from 'node:fs';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { openDatabase } from '../db/database.js';
import { checkSchema, migrate, SchemaMismatch } from '../db/migrate.js';
import { createLogger } from '../logger.js';
import type { AdminAccess, ClientMetadata } from '../oidc/client-store.js';
import { importSessionsFromRedis } from '../oidc/adapter/legacy-redis-sessions.js';
import { sealSecretsAtRest } from '../oidc/secrets-at-rest.js';
import { createServices, type Services } from '../services.js';
import { exportAsCsv, exportAsJsonLines } from '../flows/client-export.js';
import { ACCOUNTS_USAGE, cliActor, parseAccountsCommand, runAccountsCommand } from './accounts-commands.js';

const USAGE = `Usage: npm run cli -- <command>

  migrate                          apply pending database migrations
  clients add <file.json|-> [--admin read|write]
                                   register a client (RFC 7591 JSON); prints its id and secret once.
                                   --admin: an Admin API client (client credentials, scope admin:read,
                                   with write also admin:write); nothing else can get those scopes
  clients list                     list registered clients
  clients show <client_id>         show a client's metadata (secret masked)
  clients remove <client_id>       remove a client and everything issued to it
  clients rotate-secret <client_id>  issue a new client secret; prints it once
  clients lint                     list stored clients that break a registration rule (exit 1 if any)
  keys list                        list signing keys and their state
  keys rotate                      promote the published next keys to signing, retire the current ones
  sessions import-from-redis       once, when upgrading with the old processes stopped: move the browser
                                   sessions an older Tsunagi kept in Redis into Postgres
  secrets reencrypt                re-seal every secret at rest with the newest TSUNAGI_MASTER_KEY
                                   (after it, the keys in TSUNAGI_MASTER_KEY_PREVIOUS can be dropped)
  export --client <id> [--since <cursor>] [--format jsonl|csv]
                                   the client's incremental export (LINE method 3), to standard output
${ACCOUNTS_USAGE}`;

class UsageError extends Error {}

/** A check that ran and found problems: exit 1 after printing them (not a usage error). */
class CheckFailed extends Error {}

async function readJson(source: string): Promise<ClientMetadata> {
  const text = source === '-' ? fs.readFileSync(0, 'utf8') : fs.readFileSync(source, 'utf8');
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    return parsed as ClientMetadata;
  } catch (err) {
    throw new UsageError(`${source === '-' ? 'standard input' : source} is not a JSON object: ${(err as Error).message}`);
  }
}

/** `--admin read|write` after `clients add <file>`; anything else there is a usage error. */
function adminFlagOf(rest: string[]): AdminAccess | undefined {
  if (rest.length === 0) return undefined;
  const [flag, value, ...extra] = rest;
  if (flag !== '--admin' || (value !== 'read' && value !== 'write') || extra.length > 0) {
    throw new UsageError('clients add takes only --admin read or --admin write after the file name');
  }
  return value;
}

async function withServices<T>(config: Config, fn: (s: Services) => Promise<T>): Promise<T> {
  const services = await createServices({ ...config, logLevel: process.env.LOG_LEVEL ?? 'warn' }, createLogger(process.env.LOG_LEVEL ?? 'warn'));
  try {
    return await fn(services);
  } finally {
    await services.close();
  }
}

const out = (value: unknown) => process.stdout.write(`${typeof value === 'string' ? value : JSON.stringify(value, null, 2)}\n`);

export async function run(argv: string[], config: Config): Promise<void> {
  const [group, command, arg] = argv;
  if (group === 'migrate') {
    // Through the direct connection when there is one (long DDL, no pooler in between).
    const db = await openDatabase({ databaseUrl: config.databaseDirectUrl ?? config.databaseUrl, dataDir: config.dataDir, poolMax: 1 });
    try {
      const applied = await migrate(db.pool);
      out(applied.length ? `applied: ${applied.join(', ')}` : 'the database is up to date');
      // An older version's migrate (a rollback) against a newer schema says so and fails.
      const { newerCompatible } = await checkSchema(db.pool);
      if (newerCompatible.length) out(`the database also has newer, backward compatible migrations: ${newerCompatible.join(', ')}`);
    } finally {
      await db.close();
    }
    return;
  }
  if (group === 'clients') {
    await withServices(config, async ({ clients }) => {
      switch (command) {
        case 'add': {
          if (!arg) throw new UsageError('clients add needs a file name or - for standard input');
          const admin = adminFlagOf(argv.slice(3));
          const metadata = await clients.add(await readJson(arg), admin ? { admin } : {});
          out({ client_id: metadata.client_id, ...(metadata.client_secret ? { client_secret: metadata.client_secret } : {}) });
          if (metadata.client_secret) process.stderr.write('The client secret is shown only now; store it safely.\n');
          return;
        }
        case 'list':
          out((await clients.list()).map((c) => ({ client_id: c.clientId, client_name: c.clientName, first_party: c.firstParty, source: c.source, created_at: c.createdAt })));
          return;
        case 'show':
          if (!arg) throw new UsageError('clients show needs a client id');
          out(await clients.show(arg));
          return;
        case 'remove':
          if (!arg) throw new UsageError('clients remove needs a client id');
          await clients.remove(arg);
          out(`removed ${arg}`);
          return;
        case 'rotate-secret':
          if (!arg) throw new UsageError('clients rotate-secret needs a client id');
          out({ client_id: arg, client_secret: await clients.rotateSecret(arg) });
          return;
        case 'lint': {
          const findings = await clients.lint();
          out(findings.map((f) => ({ client_id: f.clientId, client_name: f.clientName, source: f.source, violations: f.violations.map((v) => ({ rule: v.rule, message: v.message })) })));
          if (findings.length) {
            throw new CheckFailed(`${findings.length} client(s) break a registration rule: fix them (clients remove, then clients add) or remove them`);
          }
          return;
        }
        default:
          throw new UsageError(`unknown clients command ${command ?? ''}`);
      }
    });
    return;
  }
  if (group === 'keys') {
    await withServices(config, async ({ keys }) => {
      if (command === 'list') {
        out((await keys.list()).map((k) => ({ kid: k.kid, alg: k.alg, state: k.state, created_at: k.createdAt, activated_at: k.activatedAt, retire_until: k.retireUntil })));
      } else if (command === 'rotate') {
        // A retired key verifies what it signed for as long as the longest-lived JWT it could have signed.
        const verifyFor = Math.max(config.ttl.idToken, config.ttl.accessToken) + 300;
        const result = await keys.rotate(verifyFor);
        out({ ...result, note: `running servers pick up the new keys within ${config.keysReloadSeconds}s` });
      } else {
        throw new UsageError(`unknown keys command ${command ?? ''}`);
      }
    });
    return;
  }
  if (group === 'sessions') {
    if (command !== 'import-from-redis') throw new UsageError(`unknown sessions command ${command ?? ''}`);
    if (config.redis?.topology !== 'single') throw new UsageError('sessions import-from-redis needs REDIS_URL (the Redis the older version used)');
    await withServices(config, async ({ db, redis }) => {
      if (!redis) throw new UsageError('sessions import-from-redis needs REDIS_URL');
      out(await importSessionsFromRedis(db.pool, redis, `${config.redisKeyPrefix}oidc:`));
    });
    return;
  }
  if (group === 'secrets') {
    if (command !== 'reencrypt') throw new UsageError(`unknown secrets command ${command ?? ''}`);
    await withServices(config, async ({ db, keyring, keys, clients }) => {
      const counts = await sealSecretsAtRest(db.pool, { keyring, keys, clients }, true);
      out({ master_key: keyring.currentKeyId, resealed: { app_secrets: counts.appSecrets, signing_keys: counts.signingKeys, client_secrets: counts.clientSecrets } });
    });
    return;
  }
  if (group === 'export') {
    const flags = parseFlags(argv.slice(1), ['client', 'since', 'format']);
    if (!flags.client) throw new UsageError('export needs --client <client_id>');
    const format = flags.format ?? 'jsonl';
    if (format !== 'jsonl' && format !== 'csv') throw new UsageError('--format is jsonl or csv');
    await withServices(config, async ({ exporter, clients }) => {
      await clients.show(flags.client as string);
      const result = await exporter.exportSince(flags.client as string, flags.since);
      process.stdout.write(format === 'csv' ? exportAsCsv(result) : exportAsJsonLines(result));
      if (format === 'csv') process.stderr.write(`next cursor: ${result.nextCursor}${result.more ? ' (more waiting)' : ''}\n`);
    });
    return;
  }
  if (group === 'accounts' || group === 'audit') {
    const cmd = parseAccountsCommand(group, argv.slice(1), (m) => new UsageError(m));
    await withServices(config, ({ lifecycle }) => runAccountsCommand(cmd, lifecycle, cliActor(), { out, refused: (m) => new CheckFailed(m) }));
    return;
  }
  throw new UsageError(group ? `unknown command ${group}` : 'no command given');
}

/** --name value pairs; anything else is a usage error. */
function parseFlags(args: string[], known: string[]): Record<string, string | undefined> {
  const flags: Record<string, string | undefined> = {};
  for (let i = 0; i < args.length; i += 2) {
    const name = args[i]?.replace(/^--/, '');
    const value = args[i + 1];
    if (!name || !args[i]?.startsWith('--') || !known.includes(name) || value === undefined) throw new UsageError(`unexpected argument ${args[i] ?? ''}`);
    flags[name] = value;
  }
  return flags;
}

const isMain = process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/').split('/').pop() ?? '');
if (isMain) {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(err instanceof ConfigError ? 78 : 1);
  }
  run(process.argv.slice(2), config).then(() => process.exit(0), (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n\n${USAGE}\n`);
      process.exit(64);
    }
    if (err instanceof CheckFailed) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    if (err instanceof SchemaMismatch) {
      process.stderr.write(`refused: ${err.message}\n`);
      process.exit(SchemaMismatch.EXIT_CODE);
    }
    const e = err as Error & { error_description?: string };
    process.stderr.write(`${e.name}: ${e.error_description ?? e.message}\n`);
    process.exit(1);
  });
}
