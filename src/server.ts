import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp } from './app.js';
import type { Config } from './config.js';
import { createLogger, type Logger } from './logger.js';
import { metricsAccess } from './web/metrics.js';
import { outsideRequests } from './db/outside-requests.js';
import { sweepExpiredPayloads } from './oidc/adapter/postgres-adapter.js';
import { PostgresRateLimiter } from './limits/postgres-rate-limiter.js';
import { AppleNotificationStore } from './accounts/apple-notification-store.js';
import { HandledEventStore } from './accounts/handled-event-store.js';
import { UpstreamLoginStore } from './accounts/upstream-login-store.js';
import { createServices, type ServiceOverrides, type Services } from './services.js';

export interface RunningServer {
  url: string;
  services: Services;
  server: http.Server;
  /** Drains (SHUTDOWN_DRAIN_SECONDS unless given) and closes everything; the same promise on every call. */
  close(drainSeconds?: number): Promise<void>;
}

const SWEEP_INTERVAL_MS = 10 * 60 * 1000;

/**
 * When a response is finished, Node arms the connection's keep-alive timer (keepAliveTimeout, 65 s)
 * from inside the request's async context, so every idle keep-alive connection would hold its last
 * request for 65 s. Re-arming the same timer outside the request (db/outside-requests.ts), right
 * after Node armed it, lets a finished request go.
 */
export function releaseFinishedRequests(server: http.Server): void {
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    res.once('finish', () => {
      const socket = req.socket;
      if (socket.destroyed || !socket.timeout) return;
      const ms = socket.timeout;
      outsideRequests(() => socket.setTimeout(ms));
    });
  });
}

/** Builds the services, mounts the app, listens, and sweeps expired rows in the background. */
export async function startServer(config: Config, options: ServiceOverrides & { log?: Logger } = {}): Promise<RunningServer> {
  const log = options.log ?? createLogger(config.logLevel);
  const services = await createServices(config, log, options);
  const app = createApp(services);
  if (metricsAccess(config).kind === 'off') log.warn('/metrics is off: set METRICS_TOKEN to let a scraper read it with that bearer token');
  const { readiness } = services;
  // Draining: every response whose head is written from then on closes its connection (requests in
  // flight when SIGTERM came included), so keep-alive clients reconnect elsewhere.
  class DrainAwareResponse extends http.ServerResponse {
    override writeHead(...args: unknown[]): this {
      if (readiness.draining && !this.headersSent) this.setHeader('Connection', 'close');
      return (super.writeHead as (...a: unknown[]) => this)(...args);
    }
  }
  const server = http.createServer({ ServerResponse: DrainAwareResponse }, app.callback());
  server.keepAliveTimeout = 65_000;
  releaseFinishedRequests(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  // Each table on its own: one failing step (logged) does not keep the others from being swept.
  const sweeps: Record<string, (now: Date) => Promise<number>> = {
    oidc: () => sweepExpiredPayloads(services.db.pool),
    otp: (now) => services.otpChallenges.sweep(now),
    proofs: (now) => services.proofs.sweep(now),
    passkeyChallenges: (now) => services.passkeyStore.sweepChallenges(now),
    limits: (now) => (services.redis ? Promise.resolve(0) : new PostgresRateLimiter(services.db.pool).sweep(now)),
    upstreamLogins: (now) => new UpstreamLoginStore(services.db.pool).sweep(now),
    appleNotifications: (now) => new AppleNotificationStore(services.db.pool).sweep(now),
    googleRiscEvents: (now) => new HandledEventStore(services.db.pool, 'google_risc_events').sweep(now),
    // Not expiry but retention: AUDIT_RETENTION_DAYS (README "Account lifecycle").
    auditEvents: (now) => services.lifecycle.sweepAuditEvents(now),
  };
  const sweep = async () => {
    const now = new Date();
    const counts: Record<string, number | 'failed'> = {};
    for (const [name, run] of Object.entries(sweeps)) {
      try {
        counts[name] = await run(now);
      } catch (err) {
        counts[name] = 'failed';
        log.warn({ err, table: name }, 'sweep failed');
      }
    }
    log.debug({ swept: counts }, 'expired rows swept');
  };
  const sweeper = setInterval(() => { sweep().catch((err: unknown) => log.warn({ err }, 'sweep failed')); }, SWEEP_INTERVAL_MS);
  sweeper.unref();

  let closing: Promise<void> | undefined;
  return {
    url: `http://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${port}`,
    services,
    server,
    close(drainSeconds = config.shutdownDrainSeconds) {
      // Graceful: /readyz says 503 at once, no new connections, idle keep-alive connections closed,
      // in-flight requests finish (their responses close their connections) for up to drainSeconds;
      // what is still open then is cut. Then the pools close.
      closing ??= (async () => {
        services.readiness.startDraining();
        clearInterval(sweeper);
        let deadline: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
          deadline = setTimeout(() => {
            log.warn({ drainSeconds }, 'drain time over: closing the connections still open');
            server.closeAllConnections();
          }, drainSeconds * 1000);
        });
        clearTimeout(deadline);
        await services.close();
      })();
      return closing;
    },
  };
}
