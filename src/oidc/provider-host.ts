import type { IncomingMessage, ServerResponse } from 'node:http';
import { Provider, type KoaContextWithOIDC } from 'oidc-provider';
import { RETRY_AFTER_SECONDS, unavailableDependency } from '../failures/dependency.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../web/metrics.js';
import { buildProviderConfiguration, type ProviderDeps } from './configuration.js';
import type { SigningKeyStore } from './keys.js';
import { devicePolling } from './device-flow.js';
import { requestScopeMiddleware } from './adapter/request-scope.js';
import { revocationWithoutBody } from './revocation-response.js';
import { isHashedSecret, type ClientSecretVault } from './client-secrets.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

// oidc-provider renders a DependencyUnavailable thrown by an adapter as 503 temporarily_unavailable;
// this adds when to try again (its error handler has no hook for headers).
async function retryAfterWhenUnavailable(ctx: KoaContextWithOIDC, next: () => Promise<void>): Promise<void> {
  await next();
  if (ctx.status === 503) ctx.set('Retry-After', String(RETRY_AFTER_SECONDS));
}

/**
 * Holds the running oidc-provider. oidc-provider reads its keys once, at construction, so when the
 * key set in Postgres changes (a rotation by any process or the CLI) a new Provider is built with the
 * same configuration and swapped in; requests in flight finish on the old one.
 */
export class ProviderHost {
  private provider!: Provider;
  private handler!: Handler;
  private fingerprint = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: Omit<ProviderDeps, 'keys'>,
    private readonly keyStore: SigningKeyStore,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly clientSecrets: ClientSecretVault,
  ) {}

  get current(): Provider { return this.provider; }

  async start(reloadSeconds: number): Promise<void> {
    await this.reload();
    this.timer = setInterval(() => {
      this.reloadIfKeysChanged().catch((err: unknown) => this.log.error({ err }, 'key reload failed'));
    }, reloadSeconds * 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async reloadIfKeysChanged(): Promise<boolean> {
    if ((await this.keyStore.fingerprint()) === this.fingerprint) return false;
    await this.reload();
    return true;
  }

  callback(req: IncomingMessage, res: ServerResponse): Promise<void> {
    return this.handler(req, res);
  }

  private async reload(): Promise<void> {
    const keys = await this.keyStore.load();
    const provider = new Provider(this.deps.config.issuer, buildProviderConfiguration({ ...this.deps, keys }));
    provider.proxy = this.deps.config.trustProxy > 0;
    provider.maxIpsCount = this.deps.config.trustProxy;
    // First, so every adapter call of the request shares one scope (read once per request).
    provider.use(requestScopeMiddleware());
    provider.use(retryAfterWhenUnavailable);
    provider.use(devicePolling(this.deps.limiter));
    provider.use(revocationWithoutBody);
    compareClientSecretsThrough(provider, this.clientSecrets);
    const emitter = provider as unknown as NodeJS.EventEmitter;
    provider.use(this.deps.ciba.polling(this.deps.limiter));
    for (const event of ['server_error', 'authorization.error', 'grant.error', 'introspection.error', 'revocation.error', 'userinfo.error', 'end_session.error', 'registration_create.error', 'backchannel.error']) {
      emitter.on(event, (ctxOrErr: unknown, maybeErr?: unknown) => {
        const err = (maybeErr ?? ctxOrErr) as { error?: string; message?: string; status?: number };
        this.metrics.errors.inc({ kind: `${event}:${err?.error ?? 'unknown'}` });
        const unavailable = unavailableDependency(err);
        if (unavailable) this.log.warn({ event, dependency: unavailable.dependency, reason: unavailable.reason }, 'dependency unavailable');
        else if (event === 'server_error' || (err?.status ?? 400) >= 500) this.log.error({ event, err }, 'oidc-provider error');
        // A malformed request is worth one warn line (what and why, no stack).
        else if (err?.error === 'invalid_request') this.log.warn({ event, error: err.error, description: (err as { error_description?: string }).error_description }, 'request refused');
      });
    }
    // A relying party that did not get its logout token keeps a session the person ended: say so.
    emitter.on('backchannel.error', (_ctx: unknown, err: unknown, client: { clientId?: string; backchannelLogoutUri?: string } | undefined) => {
      const cause = (err as { cause?: unknown })?.cause;
      this.log.warn({
        clientId: client?.clientId,
        uri: client?.backchannelLogoutUri,
        reason: err instanceof Error ? err.message : String(err),
        ...(cause instanceof Error ? { cause: cause.message } : {}),
      }, 'back-channel logout not delivered');
    });
    this.provider = provider;
    this.handler = provider.callback() as unknown as Handler;
    if (this.fingerprint) this.log.info({ keys: keys.fingerprint }, 'signing keys changed; provider reloaded');
    this.fingerprint = keys.fingerprint;
  }
}

interface ClientWithSecret { clientId: string; clientSecret?: string }

/**
 * oidc-provider compares a presented client_secret with the one it loaded; Tsunagi stores an HMAC of
 * it (src/oidc/client-secrets.ts), so the comparison goes through the vault. And the registration
 * read/update responses (RFC 7592) leave out a hashed secret rather than show the HMAC as the secret.
 */
function compareClientSecretsThrough(provider: Provider, vault: ClientSecretVault): void {
  const model = provider.Client as unknown as { prototype: { compareClientSecret(this: ClientWithSecret, actual: string): Promise<boolean> } };
  model.prototype.compareClientSecret = async function compareClientSecret(this: ClientWithSecret, actual: string) {
    return typeof this.clientSecret === 'string' && this.clientSecret !== '' && vault.verify(this.clientId, this.clientSecret, actual);
  };
  provider.use(async (ctx, next) => {
    await next();
    const body = ctx.body as { client_secret?: unknown } | undefined;
    if (body && typeof body === 'object' && isHashedSecret(body.client_secret)) delete body.client_secret;
  });
}
