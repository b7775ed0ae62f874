import { createHash } from 'node:crypto';

/**
 * The cookies of the browser making this request, as far as binding an upstream attempt to it
 * needs them (src/http/upstream-browser-cookies.ts gives them over koa's ctx.cookies).
 */
export interface BrowserCookies {
  get(name: string): string | undefined;
  set(name: string, value: string, maxAgeSeconds: number): void;
  clear(name: string): void;
}

/**
 * The cookie that binds the upstream attempt of `state` to the browser that began it. One cookie per
 * attempt (its name derived from the state), so two attempts in two tabs of one browser do not undo
 * each other; each is single use and lives as long as its pending login.
 */
export function browserBindingCookieName(state: string): string {
  return `tsunagi.upstream.${createHash('sha256').update(`browser-binding\0${state}`).digest('base64url').slice(0, 16)}`;
}
