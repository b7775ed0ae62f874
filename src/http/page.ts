import { bodyParser } from '@koa/bodyparser';
import type { Context, Next } from 'koa';
import type { Services } from '../services.js';
import { csrfToken } from './csrf.js';
import { refuseNulInBody } from './input-guard.js';
import { cspNonce } from '../web/security-headers.js';
import { languageLinks } from '../web/locale.js';

export type PageState = Record<string, unknown> & { error?: string; email?: string };

/** Renders one screen with the request's locale, CSP nonce and CSRF token. */
export function page(ctx: Context, services: Pick<Services, 'views' | 'secureCookies'>, view: string, data: Record<string, unknown> = {}): void {
  ctx.type = 'html';
  ctx.set('Cache-Control', 'no-store');
  ctx.body = services.views.render(view, {
    locale: ctx.state.locale,
    nonce: cspNonce(ctx),
    csrfToken: csrfToken(ctx, services.secureCookies),
    languageLinks: languageLinks(ctx, typeof data.languageReturnTo === 'string' ? data.languageReturnTo : undefined),
  }, data);
}

/** Form bodies for Tsunagi's own pages only (oidc-provider parses its own); a NUL in any field is refused. */
export function formBody() {
  const parse = bodyParser({ enableTypes: ['form'], formLimit: '16kb' });
  const refuseNul = refuseNulInBody();
  return (ctx: Context, next: Next) => parse(ctx, () => refuseNul(ctx, next));
}
