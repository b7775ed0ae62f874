import { AccountStore } from './accounts/account-store.js';
import { OtpChallengeStore } from './accounts/otp-challenge-store.js';
import { PasskeyStore } from './accounts/passkey-store.js';
import { ProofStore } from './accounts/proof-store.js';
import { UpstreamIdentityStore, UpstreamTokenCipher } from './accounts/upstream-identity-store.js';
import { UpstreamLoginStore } from './accounts/upstream-login-store.js';
import type { Config } from './config.js';
import { getOrCreateSecret } from './db/app-secrets.js';
import { loadMasterKeyring, type MasterKeyring } from './secrets/master-key.js';
import { openDatabase, type Database } from './db/database.js';
import { checkSchema, migrate } from './db/migrate.js';
import { checkRedis, closeRedis, openRedis, type RedisConnection } from './db/redis.js';
import { withDeadline } from './failures/dependency.js';
import { DevOutbox, OutboxMailer, SmtpMailer, type Mailer } from './delivery/mailer.js';
import { Metrics } from './web/metrics.js';
import { Readiness } from './web/readiness.js';
import { Views } from './web/views.js';
import { PostgresRateLimiter } from './limits/postgres-rate-limiter.js';
import type { RateLimiter } from './limits/rate-limiter.js';
import { RedisRateLimiter } from './limits/redis-rate-limiter.js';
import type { Logger } from './logger.js';
import { EmailOtpMethod } from './methods/email-otp.js';
import { PasskeyMethod } from './methods/passkey.js';
import { SmsOtpMethod } from './methods/sms-otp.js';
import { outboxSmsSender, outboxTextSender, twilioSender, twilioTextSender } from './delivery/sms.js';
import { CibaApprovalStore } from './accounts/ciba-approval-store.js';
import { CibaBackchannel, type CibaSendLimits } from './oidc/ciba.js';
import { ClientExportStore } from './accounts/client-export-store.js';
import { ClientExporter } from './flows/client-export.js';
import { pairwiseSubject } from './oidc/subject.js';
import { createAdapterFactory } from './oidc/adapter/index.js';
import { findLatestGrantId, listGrantsOfAccount } from './oidc/adapter/grant-lookup.js';
import { accountIdsWithGrantsFor, listSessionsOfAccount } from './oidc/adapter/account-artifacts.js';
import { endEverywhere } from './oidc/backchannel-logout.js';
import { ClientStore, type ClientMetadata } from './oidc/client-store.js';
import { ClientSecretVault, withClientSecretVault } from './oidc/client-secrets.js';
import { clientPolicyOf } from './oidc/configuration.js';
import { sealSecretsAtRest } from './oidc/secrets-at-rest.js';
import { SigningKeyStore } from './oidc/keys.js';
import { ProviderHost } from './oidc/provider-host.js';
import { UpstreamProviders } from './upstream/index.js';
import { AccountLifecycleStore } from './accounts/account-lifecycle-store.js';
import { AccountLifecycle } from './flows/account-lifecycle.js';
import { CodeStep } from './flows/code-step.js';
import { AccountSettings } from './flows/account-settings.js';
import type { GrantDeps } from './flows/grants.js';
import type { LinkDeps } from './flows/link.js';
import type { RequireEmailDeps } from './flows/require-email.js';
import { isUuid } from './accounts/account-store.js';
import { endSessionsOfAccount, revokeGrant } from './oidc/session-ending.js';

/** Everything the HTTP layer and the CLI need, built once from a Config. */
export interface Services {
  config: Config;
  log: Logger;
  db: Database;
  redis: RedisConnection | undefined;
  accounts: AccountStore;
  otpChallenges: OtpChallengeStore;
  proofs: ProofStore;
  passkeyStore: PasskeyStore;
  limiter: RateLimiter;
  mailer: Mailer;
  outbox: DevOutbox | undefined;
  emailOtp: EmailOtpMethod;
  passkeys: PasskeyMethod;
  /** SMS codes; undefined in production when Twilio is not configured. */
  smsOtp: SmsOtpMethod | undefined;
  /** Codes sent from the account page to addresses and numbers being added (bound to the account session). */
  verifyEmail: EmailOtpMethod;
  verifyPhone: SmsOtpMethod | undefined;
  /** The code step of every flow (src/flows/code-step.ts): sign-in, link and require-email codes, and the account page's. */
  codes: CodeSteps;
  /** The journey's flows, each built once here (src/flows/). */
  flows: Flows;
  /** Google and Apple identities linked to accounts. */
  identities: UpstreamIdentityStore;
  /** Seals upstream refresh tokens (at rest, and while a link or signup decision waits). */
  upstreamCipher: UpstreamTokenCipher;
  /** Google / Apple sign-in: only the configured providers are enabled. */
  upstream: UpstreamProviders;
  keys: SigningKeyStore;
  clients: ClientStore;
  /** Seals secrets at rest (src/secrets/master-key.ts); never in the database. */
  keyring: MasterKeyring;
  /** LINE mini-app method 2: CIBA requests and their approval links. */
  ciba: CibaBackchannel;
  cibaApprovals: CibaApprovalStore;
  /** LINE mini-app method 3: incremental export per client, and link codes. */
  exporter: ClientExporter;
  exportStore: ClientExportStore;
  /** Issue 15: find, show, disable, enable, delete, unlink, end sessions, export (person, CLI, Admin API). */
  lifecycle: AccountLifecycle;
  host: ProviderHost;
  views: Views;
  metrics: Metrics;
  /** /readyz: dependencies reachable in time, and not draining for shutdown. */
  readiness: Readiness;
  cookieKeys: string[];
  secureCookies: boolean;
  close(): Promise<void>;
}

export interface CodeSteps {
  email: CodeStep;
  sms: CodeStep | undefined;
  addEmail: CodeStep;
  addPhone: CodeStep | undefined;
}

/** Each flow's dependencies, built once (routes receive these, not the stores they are made of). */
export interface Flows {
  /** Account-page changes, audited and announced; the one instance (it can unlink and remove passkeys). */
  settings: AccountSettings;
  /** Upstream login, link, upstream signup (src/flows/upstream.ts, link.ts, upstream-signup.ts). */
  upstream: LinkDeps;
  /** Require-email and the end of every sign-in (src/flows/require-email.ts, sign-in.ts). */
  signIn: RequireEmailDeps;
  /** Revoking grants (src/flows/grants.ts). */
  grants: GrantDeps;
}

export interface ServiceOverrides {
  mailer?: Mailer;
  /** Tests: upstream providers with a fake clock or short key-refresh cooldowns. */
  upstream?: UpstreamProviders;
  metrics?: Metrics;
  /** Tests: the clock of the refresh-token reuse interval. */
  refreshTokenClock?: () => Date;
  /** Tests: CIBA send limits small enough to reach. */
  cibaLimits?: CibaSendLimits;
}

export async function createServices(config: Config, log: Logger, overrides: ServiceOverrides = {}): Promise<Services> {
  const keyring = loadMasterKeyring(config);
  const db = await openDatabase({
    databaseUrl: config.databaseUrl, directUrl: config.databaseDirectUrl, dataDir: config.dataDir, poolMax: config.dbPoolMax,
    namedStatements: config.dbPreparedStatements
      ? { onRefused: (err) => log.warn({ err }, 'Postgres refused a named prepared statement (a transaction pooler such as PgBouncer before 1.21?): this pool goes on without them; DATABASE_PREPARED_STATEMENTS=false skips the attempt') }
      : undefined,
    timeouts: { connectTimeoutMs: config.timeouts.dbConnectMs, queryTimeoutMs: config.timeouts.dbQueryMs },
  });
  let redis: RedisConnection | undefined;
  try {
    await prepareSchema(config, db, log);
    redis = config.redis ? await openRedis(
      config.redis, { commandTimeoutMs: config.timeouts.redisCommandMs, connectTimeoutMs: config.timeouts.redisConnectMs },
      (event) => log.info(event, 'redis topology changed'),
    ) : undefined;

    const accounts = new AccountStore(db.pool);
    const otpChallenges = new OtpChallengeStore(db.pool);
    const proofs = new ProofStore(db.pool);
    const passkeyStore = new PasskeyStore(db.pool);
    const passkeys = new PasskeyMethod({ store: passkeyStore, rpId: config.webauthn.rpId, rpName: 'Tsunagi', origins: config.webauthn.origins });
    const limiter: RateLimiter = redis ? new RedisRateLimiter(redis, `${config.redisKeyPrefix}rl:`) : new PostgresRateLimiter(db.pool);
    // Outside production, whatever has no real channel configured (mail without SMTP_URL, SMS without Twilio) goes here.
    const outbox = config.nodeEnv === 'production' ? undefined : new DevOutbox(log);
    if (!config.smtpUrl && config.nodeEnv === 'production' && !overrides.mailer) throw new Error('SMTP_URL is required in production');
    const mailer = overrides.mailer ?? (config.smtpUrl ? new SmtpMailer(config.smtpUrl, config.mailFrom, config.timeouts.smtpMs) : new OutboxMailer(outbox as DevOutbox));
    const pepper = await getOrCreateSecret(db.pool, keyring, 'otp-pepper');
    const emailOtp = new EmailOtpMethod({ challenges: otpChallenges, limiter, mailer, pepper });
    const verifyEmail = new EmailOtpMethod({ challenges: otpChallenges, limiter, mailer, pepper }, 'add-email');
    const smsSender = config.twilio ? twilioSender(config.twilio, log) : outbox ? outboxSmsSender(outbox) : undefined;
    const smsOtp = smsSender ? new SmsOtpMethod({ challenges: otpChallenges, limiter, pepper, sender: smsSender }) : undefined;
    const verifyPhone = smsSender ? new SmsOtpMethod({ challenges: otpChallenges, limiter, pepper, sender: smsSender }, 'add-phone') : undefined;

    const codes: CodeSteps = {
      email: new CodeStep('email', emailOtp), sms: smsOtp && new CodeStep('sms', smsOtp),
      addEmail: new CodeStep('email', verifyEmail), addPhone: verifyPhone && new CodeStep('sms', verifyPhone),
    };

    const upstreamCipher = await UpstreamTokenCipher.fromDatabase(db.pool, keyring);
    const identities = new UpstreamIdentityStore(db.pool, upstreamCipher);
    const upstream = overrides.upstream ?? new UpstreamProviders({ config: config.upstream, logins: new UpstreamLoginStore(db.pool) });

    const keys = new SigningKeyStore(db.pool, keyring);
    const created = await keys.ensureKeys();
    if (created) log.info({ created }, 'signing keys generated');
    const cookieKeys = config.cookieSecrets ?? [await getOrCreateSecret(db.pool, keyring, 'cookie-key')];
    const pairwiseSalt = await getOrCreateSecret(db.pool, keyring, 'pairwise-salt');
    const clientSecrets = await ClientSecretVault.open(db.pool, keyring);
    const views = new Views(config.nodeEnv === 'production');
    const metrics = overrides.metrics ?? new Metrics();
    const cibaApprovals = new CibaApprovalStore(db.pool);
    const ciba = new CibaBackchannel({
      issuer: config.issuer, defaultPhoneRegion: config.defaultPhoneRegion, accounts, approvals: cibaApprovals, limiter, mailer, log,
      textSender: config.twilio ? twilioTextSender(config.twilio, log) : outbox ? outboxTextSender(outbox) : undefined,
      ...(overrides.cibaLimits ? { limits: overrides.cibaLimits } : {}),
    });
        const adapterFactory = withClientSecretVault(createAdapterFactory(db.pool, redis, `${config.redisKeyPrefix}oidc:`, {
      refreshTokenReuseSeconds: config.ttl.refreshTokenReuse, now: overrides.refreshTokenClock,
    }), clientSecrets);
    const host = new ProviderHost({
      config, accounts, adapterFactory, cookieKeys, pairwiseSalt, views, limiter, ciba,
      findLatestGrantId: (accountId, clientId) => findLatestGrantId(db.pool, accountId, clientId),
    }, keys, log, metrics, clientSecrets);
    const clientModel = () => host.current.Client as unknown as { validate(m: ClientMetadata): Promise<void>; needsSecret(m: ClientMetadata): boolean };
    const clients = new ClientStore(db.pool, (m) => clientModel().validate(m), (m) => clientModel().needsSecret(m), accounts, clientSecrets, clientPolicyOf(config));
    // Rows written before migration 006 (plain signing keys, app secrets, client secrets) are sealed now.
    const sealed = await sealSecretsAtRest(db.pool, { keyring, keys, clients }, false);
    if (sealed.appSecrets + sealed.signingKeys + sealed.clientSecrets > 0) log.info({ sealed }, 'secrets at rest sealed with the master key');
    await host.start(config.keysReloadSeconds);

    const exportStore = new ClientExportStore(db.pool);
    const exporter = new ClientExporter({
      store: exportStore, secret: await getOrCreateSecret(db.pool, keyring, 'export-key'),
      async subjectFor(accountId, clientId) {
        const client = await host.current.Client.find(clientId);
        return client?.subjectType === 'pairwise' ? pairwiseSubject(client.sectorIdentifier as string | undefined, accountId, pairwiseSalt) : accountId;
      },
    });

    const lifecycle = new AccountLifecycle({
      pool: db.pool, accounts, store: new AccountLifecycleStore(db.pool), identities, passkeys: passkeyStore,
      artifacts: {
        listSessions: (accountId) => listSessionsOfAccount(db.pool, accountId),
        listGrants: (accountId) => listGrantsOfAccount(db.pool, accountId),
        accountIdsWithGrantsFor: (clientId) => accountIdsWithGrantsFor(db.pool, clientId),
        endEverywhere: (accountId) => endEverywhere({ pool: db.pool, provider: () => host.current, log }, accountId),
      },
      async subjectFor(clientId) {
        const client = await host.current.Client.find(clientId);
        if (!client) return undefined;
        return client.subjectType === 'pairwise' ? (id) => pairwiseSubject(client.sectorIdentifier as string | undefined, id, pairwiseSalt) : (id) => id;
      },
      async clientName(clientId) {
        return ((await host.current.Client.find(clientId))?.clientName as string | undefined) ?? undefined;
      },
      revokeAppleToken: upstream.isEnabled('apple') ? (token) => upstream.revokeAppleToken(token) : undefined,
      mailer, log, auditRetentionDays: config.auditRetentionDays, defaultPhoneRegion: config.defaultPhoneRegion,
    });
    const settings = new AccountSettings({
      pool: db.pool, accounts, mailer, log,
      passkeys: { remove: (tx, accountId, id) => passkeyStore.delete(accountId, id, tx) },
      upstream: {
        unlink: async (tx, accountId, id) => {
          const removed = isUuid(id) ? await identities.unlink(accountId, id, tx) : undefined;
          return removed && { provider: removed.identity.provider, refreshToken: removed.refreshToken };
        },
        resumeAfterHijacking: async (tx, accountId, id) => isUuid(id) && identities.resumeSignIn(accountId, id, 'hijacking', tx),
      },
    });
    const flows: Flows = {
      settings,
      upstream: { pool: db.pool, accounts, identities, proofs, cipher: upstreamCipher, settings },
      signIn: { pool: db.pool, accounts, proofs },
      grants: {
        settings,
        async grantOwner(grantId) {
          const grant = await host.current.Grant.find(grantId);
          return grant?.accountId && grant.clientId ? { accountId: grant.accountId, clientId: grant.clientId } : undefined;
        },
        revokeGrant: (grantId) => revokeGrant(host.current, grantId),
        async endSessionsAndGrants(accountId) {
          await endSessionsOfAccount({ pool: db.pool, provider: () => host.current }, accountId, { grants: 'all' });
        },
      },
    };

    const r = redis;
    const readiness = new Readiness({
      database: () => db.pool.query('SELECT 1'),
      ...(r ? { redis: () => checkRedis(r) } : {}),
    });
    return {
      config, log, db, redis, accounts, otpChallenges, proofs, passkeyStore, passkeys, limiter, mailer, outbox, emailOtp, smsOtp, verifyEmail, verifyPhone, codes, flows, identities, upstreamCipher, upstream, keys, clients, keyring, host, views, metrics, readiness, ciba, cibaApprovals, exporter, exportStore, lifecycle,
      cookieKeys,
      secureCookies: new URL(config.issuer).protocol === 'https:',
      async close() {
        host.stop();
        await ciba.idle();
        if (mailer instanceof SmtpMailer) mailer.close();
        if (r) await closeRedis(r, config.timeouts.redisCommandMs);
        await db.close();
      },
    };
  } catch (err) {
    if (redis) await closeRedis(redis, config.timeouts.redisCommandMs);
    await db.close().catch(() => undefined);
    throw err;
  }
}

/**
 * Pending migrations are applied (MIGRATE_ON_START, the default; several nodes starting at once take
 * turns under the migration lock), through the direct connection when there is one. Then the schema
 * must match this version (src/db/migrate.ts checkSchema), or the process refuses to serve.
 */
async function prepareSchema(config: Config, db: Database, log: Logger): Promise<void> {
  if (config.migrateOnStart) {
    const direct = config.databaseDirectUrl ? await openDatabase({ databaseUrl: config.databaseDirectUrl, dataDir: config.dataDir, poolMax: 1 }) : undefined;
    try {
      const applied = await migrate((direct ?? db).pool);
      if (applied.length) log.info({ applied }, 'migrations applied');
    } finally {
      await direct?.close();
    }
  }
  const { newerCompatible } = await checkSchema(db.pool);
  if (newerCompatible.length) {
    log.warn({ migrations: newerCompatible }, 'the database has newer migrations, declared backward compatible: serving with this older version');
  }
}
