import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { Context } from 'koa';
import { AppleNotificationStore } from '../accounts/apple-notification-store.js';
import { handleAppleNotification, parseAppleEvents, type AppleNotificationDeps } from '../flows/apple-notifications.js';
import { endEverythingOfAccount } from '../flows/grants.js';
import type { Services } from '../services.js';
import { UpstreamError } from '../upstream/index.js';

/** Where Apple posts server-to-server notifications (register it in the Apple developer console). */
export const APPLE_NOTIFICATIONS_PATH = '/upstream/apple/notifications';

/**
 * Apple's server-to-server notifications: `POST {"payload": "<JWS>"}`. The JWS is checked against
 * Apple's keys (iss, aud = APPLE_CLIENT_ID, iat), then src/flows/apple-notifications.ts applies it
 * once. Answers carry no detail (the reason goes to the log): 200 handled or already handled, 400 a
 * payload that is not a valid notification for this client (Apple should not retry it), 404 Apple
 * not configured, 503 Apple's keys unreachable (Apple retries later).
 */
export function appleNotificationRoutes(services: Services): Router {
  const { upstream, identities, accounts, db, log } = services;
  const router = new Router();
  const notifications = new AppleNotificationStore(db.pool);

  /** Every grant of the account and everything issued under it, and its browser sessions (src/flows/grants.ts). */
  const endSessions = (accountId: string) => endEverythingOfAccount(services.flows.grants, accountId);

  const answer = (ctx: Context, status: number) => {
    ctx.status = status;
    ctx.set('cache-control', 'no-store');
    ctx.body = '';
  };

  router.post(APPLE_NOTIFICATIONS_PATH, bodyParser({ enableTypes: ['json'], jsonLimit: '32kb', onError: () => undefined }), async (ctx) => {
    if (!upstream.isEnabled('apple')) return answer(ctx, 404);
    const body: unknown = ctx.request.body;
    const jws = typeof body === 'object' && body !== null ? (body as { payload?: unknown }).payload : undefined;
    if (typeof jws !== 'string' || jws.length === 0 || jws.length > 16_384) {
      log.info({ reason: 'no_payload' }, 'apple notification refused');
      return answer(ctx, 400);
    }
    let claims;
    try {
      claims = await upstream.verifyAppleNotification(jws);
    } catch (err) {
      if (!(err instanceof UpstreamError)) throw err;
      const retryLater = err.reason === 'timeout' || err.reason === 'unavailable';
      log.warn({ reason: err.reason, detail: err.message }, 'apple notification refused');
      return answer(ctx, retryLater ? 503 : 400);
    }
    const event = parseAppleEvents(claims.events);
    if (!event) {
      log.info({ reason: 'bad_events' }, 'apple notification refused');
      return answer(ctx, 400);
    }
    const deps: AppleNotificationDeps = {
      pool: db.pool, accounts, identities, notifications, appleIssuer: upstream.issuerOf('apple'), endSessions,
    };
    const { outcome } = await handleAppleNotification(deps, event);
    log.info({ type: event.rawType, outcome }, 'apple notification');
    answer(ctx, 200);
  });
  return router;
}
