import type { KoaContextWithOIDC } from 'oidc-provider';
import { errors } from 'oidc-provider';

/**
 * oidc-provider protects its own forms (the sign-out confirmation, the device code pages) with one
 * xsrf secret in the session. Opening the same page in a second tab, or re-rendering it, replaces
 * that secret, so the first tab's form is stale; so is a sign-out form whose session already ended
 * in the other tab. That is the person's browser doing ordinary things, not a bad request from the
 * application: such a form is answered with a fresh one, never an error that blames the client.
 */
export function isStaleProviderForm(error: unknown): boolean {
  return error instanceof errors.InvalidRequest
    && ['xsrf token invalid', 'could not find logout details', 'could not find device form details'].includes(error.error_description ?? '');
}

/**
 * Where a stale sign-out confirmation goes: the end_session endpoint again, with what the session
 * itself remembers of the current request (oidc-provider validates it once more). Signed in, it
 * renders a fresh confirmation; already signed out (the other tab did it), it completes at once.
 */
export function freshLogoutUrl(ctx: KoaContextWithOIDC): string {
  const state = (ctx.oidc.session as unknown as { state?: { clientId?: unknown; postLogoutRedirectUri?: unknown; state?: unknown } } | undefined)?.state;
  const url = new URL(ctx.oidc.urlFor('end_session'));
  if (typeof state?.clientId === 'string') {
    url.searchParams.set('client_id', state.clientId);
    if (typeof state.postLogoutRedirectUri === 'string') url.searchParams.set('post_logout_redirect_uri', state.postLogoutRedirectUri);
    if (typeof state.state === 'string') url.searchParams.set('state', state.state);
  }
  return url.href;
}
