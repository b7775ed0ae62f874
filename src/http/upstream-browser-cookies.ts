import type { Context } from 'koa';
import type { BrowserCookies } from '../upstream/browser-binding.js';

/**
 * The binding cookies of upstream attempts (src/upstream/browser-binding.ts) over koa's cookies.
 * SameSite=Lax: sent on the top-level GET that brings the person back from Google, and on the
 * same-site GET an Apple form_post is redirected to; never on a cross-site POST. Only sent to the
 * callbacks (<issuer path>/upstream/); httpOnly; Secure whenever the issuer is https.
 */
export function upstreamBrowserCookies(ctx: Context, site: { issuer: string; secureCookies: boolean }): BrowserCookies {
  const path = `${new URL(site.issuer).pathname.replace(/\/+$/, '')}/upstream/`;
  const options = { httpOnly: true, sameSite: 'lax' as const, secure: site.secureCookies, signed: false, path, overwrite: true };
  return {
    get: (name) => ctx.cookies.get(name, { signed: false }) || undefined,
    set: (name, value, maxAgeSeconds) => { ctx.cookies.set(name, value, { ...options, maxAge: maxAgeSeconds * 1000 }); },
    clear: (name) => { ctx.cookies.set(name, null, options); },
  };
}
