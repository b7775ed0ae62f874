import type { KoaContextWithOIDC } from 'oidc-provider';

/**
 * Middleware on oidc-provider (provider.use): a successful revocation (RFC 7009 section 2.2: 200,
 * the body is ignored) goes out with no body and no Content-Type. oidc-provider answers an empty
 * body labelled text/plain, which strict clients refuse: oidc-client-ts's revokeTokens() (and
 * revokeTokensOnSignout) throws "Invalid response Content-Type" on any type but JSON, while it
 * accepts a response without one.
 */
export async function revocationWithoutBody(ctx: KoaContextWithOIDC, next: () => Promise<void>): Promise<void> {
  await next();
  if (ctx.oidc?.route !== 'revocation' || ctx.status !== 200) return;
  // koa turns a null body into 204; the explicit 200 after it keeps RFC 7009's status, and koa then
  // sends Content-Length: 0 with no Content-Type.
  ctx.body = null;
  ctx.status = 200;
}
