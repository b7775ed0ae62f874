import type { Context, Next } from 'koa';
import { errors } from 'oidc-provider';
import type { Logger } from '../logger.js';
import type { Metrics } from './metrics.js';
import type { Views } from './views.js';
import { cspNonce } from './security-headers.js';
import { languageLinks } from './locale.js';

/** Errors on Tsunagi's own pages become a readable page (or JSON for API callers); 5xx are logged. */
export function errorPages(views: Views, log: Logger, metrics: Metrics) {
  return async (ctx: Context, next: Next) => {
    try {
      await next();
    } catch (err) {
      let status = 500;
      let key = 'error.server';
      if (err instanceof errors.SessionNotFound) { status = 400; key = 'error.session_expired'; }
      else if (err instanceof errors.OIDCProviderError) { status = err.status; key = 'error.bad_request'; }
      else if (typeof err === 'object' && err && (err as { name?: string }).name === 'CsrfFailure') { status = 403; key = 'error.csrf'; }
      else if (typeof err === 'object' && err && (err as { name?: string }).name === 'StaleInteraction') { status = 400; key = 'error.stale_interaction'; }
      else if (typeof err === 'object' && err && (err as { name?: string }).name === 'InteractionExpired') { status = 400; key = 'error.interaction_expired'; }
      else if (typeof err === 'object' && err && typeof (err as { status?: number }).status === 'number' && (err as { status: number }).status < 500) {
        status = (err as { status: number }).status; key = 'error.bad_request';
      }
      if (status >= 500) log.error({ err, path: ctx.path }, 'request failed');
      metrics.errors.inc({ kind: key });
      ctx.status = status;
      ctx.set('Cache-Control', 'no-store');
      if (ctx.accepts('html', 'json') === 'json') {
        ctx.body = { error: status >= 500 ? 'server_error' : 'invalid_request', error_description: key };
      } else {
        ctx.type = 'html';
        ctx.body = views.render('error', { locale: ctx.state.locale ?? 'en', nonce: cspNonce(ctx), languageLinks: languageLinks(ctx) }, { messageKey: key, status });
      }
    }
  };
}
