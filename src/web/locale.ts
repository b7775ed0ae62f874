import type { Context, Next } from 'koa';
import { isLocale, LOCALES, negotiateLocale, type Locale } from '../i18n/index.js';

export const LOCALE_COOKIE = 'tsunagi.locale';

/** ctx.state.locale for every request: ?lang= (a person's explicit choice, remembered), ui_locales, cookie, Accept-Language. */
export function localeMiddleware(secure: boolean) {
  return async (ctx: Context, next: Next) => {
    const chosen = typeof ctx.query.lang === 'string' && isLocale(ctx.query.lang) ? ctx.query.lang : undefined;
    if (chosen) ctx.cookies.set(LOCALE_COOKIE, chosen, { httpOnly: true, sameSite: 'lax', secure, maxAge: 365 * 86400_000, signed: false, overwrite: true });
    ctx.state.locale = chosen ?? negotiateLocale({
      uiLocales: typeof ctx.query.ui_locales === 'string' ? ctx.query.ui_locales : undefined,
      cookie: ctx.cookies.get(LOCALE_COOKIE, { signed: false }),
      acceptLanguage: ctx.get('accept-language'),
    });
    await next();
  };
}

/** Inside an interaction the relying party's ui_locales outranks the cookie, unless the person just chose. */
export function applyUiLocales(ctx: Context, uiLocales: unknown): void {
  if (typeof ctx.query.lang === 'string' && isLocale(ctx.query.lang)) return;
  if (typeof uiLocales !== 'string') return;
  ctx.state.locale = negotiateLocale({
    uiLocales,
    cookie: ctx.cookies.get(LOCALE_COOKIE, { signed: false }),
    acceptLanguage: ctx.get('accept-language'),
  });
}

/**
 * The footer's language links: the page the person is on, with its query kept and only `lang` set.
 * A page answering a POST has no URL of its own to reload, so it links to the GET page of the same
 * step: returnTo when the route names one, else the same path (most steps have a GET twin).
 */
export function languageLinks(ctx: Pick<Context, 'method' | 'originalUrl' | 'path'>, returnTo?: string): Record<Locale, string> {
  const base = returnTo ?? (ctx.method === 'GET' || ctx.method === 'HEAD' ? ctx.originalUrl : ctx.path);
  const url = new URL(base, 'http://tsunagi.invalid');
  return Object.fromEntries(LOCALES.map((l) => {
    url.searchParams.set('lang', l);
    return [l, `${url.pathname}${url.search}`];
  })) as Record<Locale, string>;
}
