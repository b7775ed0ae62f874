import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Context, Next } from 'koa';

const NONCE = Symbol('tsunagi.cspNonce');
type WithNonce = IncomingMessage & { [NONCE]?: string };

/** The CSP nonce of this request (the same for Tsunagi's routes and oidc-provider's pages). */
export function cspNonce(ctx: { req: IncomingMessage }): string {
  const req = ctx.req as WithNonce;
  req[NONCE] ??= randomBytes(16).toString('base64');
  return req[NONCE];
}

/**
 * Headers for every response. No inline script anywhere: scripts and styles need the nonce.
 * form-action is left out on purpose: browsers apply it to the redirect to the relying party after a
 * sign-in form is posted, which would block every login.
 */
export function securityHeaders(options: { production: boolean }) {
  return async (ctx: Context, next: Next) => {
    const nonce = cspNonce(ctx);
    ctx.set('Content-Security-Policy', [
      "default-src 'self'",
      `script-src 'self' 'nonce-${nonce}'`,
      `style-src 'self' 'nonce-${nonce}'`,
      "img-src 'self' data:",
      "connect-src 'self'",
      "frame-ancestors 'none'",
      "base-uri 'none'",
      "object-src 'none'",
    ].join('; '));
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('X-Frame-Options', 'DENY');
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.set('Cross-Origin-Opener-Policy', 'same-origin');
    ctx.set('Permissions-Policy', 'camera=(), microphone=(), geolocation=(), payment=()');
    if (options.production) ctx.set('Strict-Transport-Security', 'max-age=63072000; includeSubDomains');
    await next();
  };
}
