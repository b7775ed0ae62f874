import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context, Next } from 'koa';

export const CSRF_FIELD = '_csrf';
const COOKIE = 'tsunagi.csrf';

/** Double-submit token: a signed, HttpOnly cookie and the same value in every form. */
export function csrfToken(ctx: Context, secure: boolean): string {
  let token = ctx.cookies.get(COOKIE, { signed: true });
  if (!token || !/^[\w-]{32,}$/.test(token)) {
    token = randomBytes(24).toString('base64url');
    ctx.cookies.set(COOKIE, token, { signed: true, httpOnly: true, sameSite: 'lax', secure, overwrite: true });
  }
  return token;
}

export class CsrfFailure extends Error {
  readonly status = 403;
  constructor() {
    super('csrf token missing or wrong');
    this.name = 'CsrfFailure';
  }
}

/** For JSON endpoints (no form body): the `x-csrf-token` header must equal the csrf cookie. */
export function csrfHeaderMatches(ctx: Context): boolean {
  const cookie = ctx.cookies.get(COOKIE, { signed: true });
  return tokensMatch(cookie, ctx.get('x-csrf-token'));
}

// Compared as bytes: a non-ASCII value of the right length in characters would otherwise reach
// timingSafeEqual with buffers of different lengths, which throws.
function tokensMatch(cookie: string | undefined, sent: unknown): boolean {
  if (!cookie || typeof sent !== 'string') return false;
  const expected = Buffer.from(cookie);
  const given = Buffer.from(sent);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Refuses any unsafe request to Tsunagi's own pages whose form token does not match its cookie. */
export function requireCsrf() {
  return async (ctx: Context, next: Next) => {
    if (['GET', 'HEAD', 'OPTIONS'].includes(ctx.method)) return next();
    const cookie = ctx.cookies.get(COOKIE, { signed: true });
    const body = ctx.request.body as Record<string, unknown> | undefined;
    const sent = body?.[CSRF_FIELD];
    if (!tokensMatch(cookie, sent)) throw new CsrfFailure();
    return next();
  };
}
