import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { Context } from 'koa';
import { HandledEventStore } from '../accounts/handled-event-store.js';
import { handleGoogleSecurityEvent, sessionsBegunWith, type GoogleRiscDeps } from '../flows/google-risc.js';
import { DEFAULT_LOCALE } from '../i18n/index.js';
import { endSessionsOfAccount } from '../oidc/session-ending.js';
import type { Services } from '../services.js';
import { SetRefused, UpstreamError, type SetErrorCode } from '../upstream/index.js';

/** Where Google pushes Cross-Account Protection events (register it with Google's RISC API: README). */
export const GOOGLE_RISC_PATH = '/upstream/google/risc';

/**
 * Google's Security Event Tokens, pushed as RFC 8935 describes: `POST` with the SET as the body
 * (`application/secevent+jwt`). 202 accepted (handled now, or handled before: a replay changes
 * nothing); 400 `{"err", "description"}` with an RFC 8935 error code for a SET that is not valid
 * for this receiver (Google should not retry it; nothing changed); 404 Google not configured; 503
 * only when Google's key set cannot be read (Google retries later). src/flows/google-risc.ts applies it.
 */
export function googleRiscRoutes(services: Services): Router {
  const { upstream, identities, accounts, db, host, config, redis, log } = services;
  const router = new Router();
  const handled = new HandledEventStore(db.pool, 'google_risc_events');
  const { settings } = services.flows;

  const deps = (): GoogleRiscDeps => ({
    pool: db.pool, accounts, identities, handled, googleIssuer: upstream.issuerOf('google'),
    endSessions: async (accountId, identity, opts) => {
      const since = new Date(Date.now() - config.ttl.session * 1000); // the oldest a live session can be
      const signInTimes = await accounts.upstreamSignInTimes(accountId, identity, since);
      await endSessionsOfAccount({ pool: db.pool, provider: () => host.current }, accountId, {
        sessions: sessionsBegunWith(signInTimes, opts.before), grants: opts.withGrants ? 'of_ended_sessions' : 'none',
      });
    },
    notifyPaused: async (accountId) => {
      const account = await accounts.findAccountById(accountId);
      if (account) await settings.notify(account, 'upstream_paused', DEFAULT_LOCALE);
    },
  });

  const refuse = (ctx: Context, err: SetErrorCode, description: string) => {
    log.info({ err, description }, 'google security event refused');
    ctx.status = 400;
    ctx.set('cache-control', 'no-store');
    ctx.body = { err, description };
  };

  router.post(GOOGLE_RISC_PATH, bodyParser({
    enableTypes: ['text'], extendTypes: { text: ['application/secevent+jwt', 'application/jwt'] }, textLimit: '16kb', onError: () => undefined,
  }), async (ctx) => {
    ctx.set('cache-control', 'no-store');
    if (!upstream.isEnabled('google')) {
      ctx.status = 404;
      ctx.body = '';
      return;
    }
    const body: unknown = ctx.request.body;
    const set = typeof body === 'string' ? body.trim() : '';
    if (!ctx.is('application/secevent+jwt', 'application/jwt')) return refuse(ctx, 'invalid_request', 'the body must be a SET (application/secevent+jwt)');
    if (!/^[\w-]+\.[\w-]+\.[\w-]*$/.test(set)) return refuse(ctx, 'invalid_request', 'the body is not a compact JWS');
    let event;
    try {
      event = await upstream.verifyGoogleSecurityEvent(set);
    } catch (err) {
      if (err instanceof SetRefused) return refuse(ctx, err.err, err.description);
      if (!(err instanceof UpstreamError)) throw err;
      log.warn({ reason: err.reason, detail: err.message }, 'google security event not verified: key set unreachable');
      ctx.status = 503;
      ctx.set('Retry-After', '60');
      ctx.body = '';
      return;
    }
    const { outcome } = await handleGoogleSecurityEvent(deps(), event);
    log.info({ type: event.type, reason: event.reason, outcome }, 'google security event');
    ctx.status = 202;
    ctx.body = '';
  });
  return router;
}
