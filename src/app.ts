import Koa from 'koa';
import { assets } from './http/assets.js';
import { errorPages } from './http/errors.js';
import { refuseNulInUrl } from './http/input-guard.js';
import { deviceFormNeedsSession } from './oidc/device-flow.js';
import { accountRoutes } from './http/account-routes.js';
import { accountLifecycleRoutes } from './http/account-lifecycle-routes.js';
import { adminApiRoutes } from './http/admin-api.js';
import { cibaRoutes } from './http/ciba-routes.js';
import { exportRoutes } from './http/export-routes.js';
import { interactionRoutes } from './http/interaction-routes.js';
import { localeMiddleware } from './web/locale.js';
import { passkeyRoutes } from './http/passkey-routes.js';
import { upstreamRoutes } from './http/upstream-routes.js';
import { appleNotificationRoutes } from './http/apple-notifications.js';
import { googleRiscRoutes } from './http/google-risc.js';
import { routeLabel } from './web/metrics.js';
import { securityHeaders } from './web/security-headers.js';
import { systemRoutes } from './http/system-routes.js';
import type { Services } from './services.js';

// oidc-provider's endpoints for machines (no page, cookie or locale of Tsunagi's is involved): they go
// to the provider right after the security headers, without passing the locale, assets, error-page
// and five routers' matching that only Tsunagi's pages need (measured in bench/: a few % per request).
const PROVIDER_API_PATHS = new Set(['/token', '/token/introspection', '/token/revocation', '/me', '/jwks', '/.well-known/openid-configuration']);

/**
 * Middleware order: request log and metrics (outermost, they see every response), security headers,
 * locale, error pages, Tsunagi's routes, then oidc-provider for everything else.
 */
export function createApp(services: Services): Koa {
  const { config, log, metrics } = services;
  // The outer app signs and reads cookies with the provider's keys, or interaction cookies would not be found.
  // X-Forwarded-For is read only as far as TRUST_PROXY hops from the right (client-written entries are ignored).
  const app = new Koa({ keys: services.cookieKeys, proxy: config.trustProxy > 0, maxIpsCount: config.trustProxy });
  app.silent = true;

  app.use(async (ctx, next) => {
    const started = process.hrtime.bigint();
    ctx.res.once('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const matched = (ctx as { _matchedRoute?: string | RegExp })._matchedRoute;
      const route = routeLabel(ctx.path, matched === undefined ? undefined : String(matched));
      metrics.httpRequests.inc({ route, method: ctx.method, status: String(ctx.res.statusCode) });
      metrics.httpDuration.observe({ route, method: ctx.method }, seconds);
      // One line per request; the path only (query strings can carry codes and tokens).
      log.info({ method: ctx.method, route, path: ctx.path, status: ctx.res.statusCode, ms: Math.round(seconds * 1000), ip: ctx.ip }, 'request');
    });
    await next();
  });
  app.use(securityHeaders({ production: config.nodeEnv === 'production' }));
  const toProvider = async (ctx: Koa.Context) => {
    ctx.respond = false;
    await services.host.callback(ctx.req, ctx.res);
  };
  app.use(async (ctx, next) => (PROVIDER_API_PATHS.has(ctx.path) ? toProvider(ctx) : next()));
  app.use(localeMiddleware(services.secureCookies));
  app.use(assets());
  app.use(errorPages(services.views, log, metrics));
  app.use(refuseNulInUrl());
  app.use(deviceFormNeedsSession(() => services.host.current));
  for (const router of [systemRoutes(services), interactionRoutes(services), accountRoutes(services), accountLifecycleRoutes(services), cibaRoutes(services), exportRoutes(services), passkeyRoutes(services), upstreamRoutes(services), appleNotificationRoutes(services), googleRiscRoutes(services), adminApiRoutes(services)]) {
    app.use(router.routes());
    app.use(router.allowedMethods());
  }
  app.use(toProvider);
  return app;
}
