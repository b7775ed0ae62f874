import type { Context, Next } from 'koa';
import { containsNul, MalformedRequest } from '../failures/malformed-input.js';

// No form field, query parameter or path segment Tsunagi or OAuth defines can hold a NUL character
// (RFC 6749 appendix A allows none), and Postgres refuses to store one: a NUL that got this far would
// surface as a 500 from the database. It is refused here, once, as the malformed request it is.

/** One percent-decoding of the path or query gives a NUL exactly when it holds %00 (HTTP itself carries no raw NUL). */
const ENCODED_NUL = /%00/i;

/** Refuses a request whose path or query string carries a NUL (before any route reads a parameter). */
export function refuseNulInUrl() {
  return async (ctx: Context, next: Next) => {
    if (ENCODED_NUL.test(ctx.path) || ENCODED_NUL.test(ctx.querystring)) throw new MalformedRequest('NUL character in the URL');
    return next();
  };
}

/** After a body parser: refuses a body that carries a NUL in any field. */
export function refuseNulInBody() {
  return async (ctx: Context, next: Next) => {
    if (containsNul((ctx.request as { body?: unknown }).body)) throw new MalformedRequest('NUL character in the request body');
    return next();
  };
}
