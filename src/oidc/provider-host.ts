import type { IncomingMessage, ServerResponse } from 'node:http';
import { Provider } from 'oidc-provider';
import type { Logger } from '../logger.js';
import type { Metrics } from '../http/metrics.js';
import { buildProviderConfiguration, type ProviderDeps } from './configuration.js';
import type { SigningKeyStore } from './keys.js';
import { devicePolling } from './device-flow.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

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
    provider.use(devicePolling(this.deps.limiter));
    for (const event of ['server_error', 'authorization.error', 'grant.error', 'introspection.error', 'revocation.error', 'userinfo.error', 'end_session.error', 'registration_create.error', 'backchannel.error']) {
      (provider as unknown as NodeJS.EventEmitter).on(event, (ctxOrErr: unknown, maybeErr?: unknown) => {
        const err = (maybeErr ?? ctxOrErr) as { error?: string; message?: string; status?: number };
        this.metrics.errors.inc({ kind: `${event}:${err?.error ?? 'unknown'}` });
        if (event === 'server_error' || (err?.status ?? 400) >= 500) this.log.error({ event, err }, 'oidc-provider error');
        // A malformed request is worth one warn line (what and why, no stack).
        else if (err?.error === 'invalid_request') this.log.warn({ event, error: err.error, description: (err as { error_description?: string }).error_description }, 'request refused');
      });
    }
    this.provider = provider;
    this.handler = provider.callback() as unknown as Handler;
    if (this.fingerprint) this.log.info({ keys: keys.fingerprint }, 'signing keys changed; provider reloaded');
    this.fingerprint = keys.fingerprint;
  }
}
