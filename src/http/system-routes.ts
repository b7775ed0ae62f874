import Router from '@koa/router';
import type { Services } from '../services.js';
import { bearerMatches, metricsAccess } from '../web/metrics.js';
import { page } from './page.js';
import { RETRY_AFTER_SECONDS } from '../failures/dependency.js';

/** Liveness, readiness, metrics and (outside production) the development outbox. */
export function systemRoutes(services: Services): Router {
  const router = new Router();
  router.get('/healthz', (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok' };
  });
  router.get('/readyz', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    const report = await services.readiness.report();
    ctx.status = report.ready ? 200 : 503;
    if (!report.ready) ctx.set('Retry-After', String(RETRY_AFTER_SECONDS));
    const unavailable = Object.entries(report.checks).filter(([, result]) => result !== 'ok').map(([name]) => name);
    ctx.body = { status: report.status, checks: report.checks, ...(unavailable.length ? { unavailable } : {}) };
  });
  const access = metricsAccess(services.config);
  router.get('/metrics', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    if (access.kind === 'off') return void (ctx.status = 404);
    if (access.kind === 'bearer' && !bearerMatches(ctx.get('authorization'), access.token)) {
      ctx.status = 401;
      ctx.set('WWW-Authenticate', 'Bearer realm="metrics"');
      return;
    }
    ctx.set('Content-Type', services.metrics.registry.contentType);
    ctx.body = await services.metrics.registry.metrics();
  });
  if (services.outbox && services.config.nodeEnv !== 'production') {
    const outbox = services.outbox;
    router.get('/dev/outbox', (ctx) => page(ctx, services, 'dev-outbox', { entries: outbox.list() }));
  }
  return router;
}
