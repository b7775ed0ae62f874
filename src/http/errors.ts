import type { Context, Next } from 'koa';
import { errors } from 'oidc-provider';
import type { Logger } from '../logger.js';
import type { Metrics } from '../web/metrics.js';
import type { Views } from '../web/views.js';
import { cspNonce } from '../web/security-headers.js';
import { RETRY_AFTER_SECONDS, unavailableDependency } from '../failures/dependency.js';
import { MalformedRequest } from '../failures/malformed-input.js';
import { languageLinks } from '../web/locale.js';

/** Errors on Tsunagi's own pages become a readable page (or JSON for API callers); 5xx are logged. */
export function errorPages(views: Views, log: Logger, metrics: Metrics) {
  return async (ctx: Context, next: Next) => {
    try {
      await next();
    } catch (err) {
      let status = 500;
      let key = 'error.server';
      const unavailable = unavailableDependency(err);
      if (unavailable) {
        status = 503; key = 'error.unavailable';
        ctx.set('Retry-After', String(RETRY_AFTER_SECONDS));
        log.warn({ dependency: unavailable.dependency, reason: unavailable.reason, path: ctx.path }, 'dependency unavailable');
      } else if (err instanceof errors.SessionNotFound) { status = 400; key = 'error.session_expired'; }
      else if (err instanceof errors.OIDCProviderError) { status = err.status; key = 'error.bad_request'; }
      else if (typeof err === 'object' && err && (err as { name?: string }).name === 'CsrfFailure') { status = 403; key = 'error.csrf'; }
      else if (typeof err === 'object' && err && (err as { name?: string }).name === 'StaleInteraction') { status = 400; key = 'error.stale_interaction'; }
      else if (typeof err === 'object' && err && (err as { name?: string }).name === 'InteractionExpired') { status = 400; key = 'error.interaction_expired'; }
      else if (typeof err === 'object' && err && typeof (err as { status?: number }).status === 'number' && (err as { status: number }).status < 500) {
        status = (err as { status: number }).status;
        const ownKey = (err as { messageKey?: unknown }).messageKey;
        key = typeof ownKey === 'string' ? ownKey : 'error.bad_request';
      }
      // A refusal with its own heading (e.g. a disabled account, src/flows/account-disabled.ts).
      const ownTitle = (err as { titleKey?: unknown } | null)?.titleKey;
      const titleKey = status < 500 && typeof ownTitle === 'string' ? ownTitle : undefined;
      if (status >= 500 && !unavailable) log.error({ err, path: ctx.path }, 'request failed');
      // Malformed input is the sender's problem, not a fault: one warn line, no stack.
      else if (err instanceof MalformedRequest) log.warn({ path: ctx.path, method: ctx.method, reason: err.reason }, 'request refused');
      metrics.errors.inc({ kind: key });
      ctx.status = status;
      ctx.set('Cache-Control', 'no-store');
      if (ctx.accepts('html', 'json') === 'json') {
        ctx.body = unavailable
          ? { error: unavailable.error, error_description: unavailable.error_description }
          : { error: status >= 500 ? 'server_error' : 'invalid_request', error_description: key };
      } else {
        ctx.type = 'html';
        ctx.body = views.render('error', { locale: ctx.state.locale ?? 'en', nonce: cspNonce(ctx), languageLinks: languageLinks(ctx) }, { messageKey: key, status, titleKey });
      }
    }
  };
}
