import Router from '@koa/router';
import type { Services } from '../services.js';
import { bearerMatches, metricsAccess } from './metrics.js';
import { page } from './page.js';

/** Liveness, readiness, metrics and (outside production) the development outbox. */
export function systemRoutes(services: Services): Router {
  const router = new Router();
  router.get('/healthz', (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok' };
  });
  router.get('/readyz', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    const checks: Record<string, string> = {};
    try {
      await services.db.pool.query('SELECT 1');
      checks.database = 'ok';
    } catch {
      checks.database = 'unreachable';
    }
    if (services.redis) {
      try {
        await services.redis.ping();
        checks.redis = 'ok';
      } catch {
        checks.redis = 'unreachable';
      }
    }
    const ready = Object.values(checks).every((v) => v === 'ok');
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ready' : 'not_ready', checks };
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
