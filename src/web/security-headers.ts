import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context, Next } from 'koa';

const NONCE = Symbol('tsunagi.cspNonce');
type WithNonce = IncomingMessage & { [NONCE]?: string };
type Response = Pick<ServerResponse, 'setHeader' | 'headersSent'>;

function contentSecurityPolicy(nonce: string | undefined): string {
  const own = nonce ? `'self' 'nonce-${nonce}'` : "'self'";
  return [
    "default-src 'self'",
    `script-src ${own}`,
    `style-src ${own}`,
    "img-src 'self' data:",
    "connect-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "object-src 'none'",
  ].join('; ');
}

/**
 * The CSP nonce of this request (the same for Tsunagi's routes and oidc-provider's pages), made when
 * a page first asks for it: the response's policy then allows it. Responses that render no page
 * (tokens, userinfo, JSON) get the policy without a nonce and cost no random bytes.
 */
export function cspNonce(ctx: { req: IncomingMessage; res: Response }): string {
  const req = ctx.req as WithNonce;
  const nonce = (req[NONCE] ??= randomBytes(16).toString('base64'));
  // Every time: an error page may be rendered after the headers of the failed response were cleared.
  if (!ctx.res.headersSent) ctx.res.setHeader('Content-Security-Policy', contentSecurityPolicy(nonce));
  return nonce;
}

/**
 * Headers for every response. No inline script anywhere: scripts and styles need the nonce.
 * form-action is left out on purpose: browsers apply it to the redirect to the relying party after a
 * sign-in form is posted, which would block every login.
 */
export function securityHeaders(options: { production: boolean }) {
  return async (ctx: Context, next: Next) => {
    const nonce = (ctx.req as WithNonce)[NONCE];
    ctx.set('Content-Security-Policy', contentSecurityPolicy(nonce));
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('X-Frame-Options', 'DENY');
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.set('Cross-Origin-Opener-Policy', 'same-origin');
    ctx.set('Permissions-Policy', 'camera=(), microphone=(), geolocation=(), payment=()');
    if (options.production) ctx.set('Strict-Transport-Security', 'max-age=63072000; includeSubDomains');
    await next();
  };
}
