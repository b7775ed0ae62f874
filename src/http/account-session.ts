import { createHash, randomBytes } from 'node:crypto';
import type { Context } from 'koa';
import type { Provider } from 'oidc-provider';
import { ACCOUNT_APP_CLIENT_ID } from '../oidc/account-app.js';

/** Adding or removing a sign-in method needs a sign-in at most this old. */
export const RECENT_SIGN_IN_SECONDS = 10 * 60;

export interface AccountSession {
  accountId: string;
  /** oidc-provider's session uid: what account-page codes and challenges are bound to. */
  sessionUid: string;
  /** Epoch seconds of the last sign-in. */
  loginTs: number;
  amr: string[];
}

/** The person signed in to Tsunagi in this browser (oidc-provider's own session cookie), if any. */
export async function readAccountSession(provider: Provider, ctx: Context): Promise<AccountSession | undefined> {
  const session = await provider.Session.get(ctx);
  if (!session.accountId) return undefined;
  return {
    accountId: session.accountId,
    sessionUid: session.uid,
    loginTs: (session.loginTs as number | undefined) ?? 0,
    amr: (session.amr as string[] | undefined) ?? [],
  };
}

export function signedInRecently(session: AccountSession, now = new Date()): boolean {
  return now.getTime() / 1000 - session.loginTs <= RECENT_SIGN_IN_SECONDS;
}

/** The binding key for codes and challenges made on the account page (not inside an OIDC interaction). */
export function accountBinding(session: AccountSession): string {
  return `account:${session.sessionUid}`;
}

const LOGIN_COOKIE = 'tsunagi.account_login';

export interface AccountLoginState { state: string; verifier: string; returnTo: string }

/** Starts a sign-in for the account page: an authorization request of the account app, PKCE and state in a signed cookie. */
export function accountLoginUrl(ctx: Context, issuer: string, opts: { returnTo: string; reauth: boolean; locale: string; loginHint?: string }): string {
  const login: AccountLoginState = {
    state: randomBytes(16).toString('base64url'),
    verifier: randomBytes(32).toString('base64url'),
    returnTo: safeReturnTo(opts.returnTo),
  };
  ctx.cookies.set(LOGIN_COOKIE, Buffer.from(JSON.stringify(login)).toString('base64url'), {
    signed: true, httpOnly: true, sameSite: 'lax', secure: issuer.startsWith('https:'), maxAge: 3600_000, overwrite: true,
  });
  const url = new URL(`${issuer}/auth`);
  url.search = new URLSearchParams({
    client_id: ACCOUNT_APP_CLIENT_ID,
    response_type: 'code',
    scope: 'openid',
    redirect_uri: `${issuer}/account/callback`,
    state: login.state,
    code_challenge: createHash('sha256').update(login.verifier).digest('base64url'),
    code_challenge_method: 'S256',
    ui_locales: opts.locale,
    ...(opts.reauth ? { prompt: 'login' } : {}),
    ...(opts.loginHint ? { login_hint: opts.loginHint } : {}),
  }).toString();
  return url.href;
}

export function takeAccountLoginState(ctx: Context): AccountLoginState | undefined {
  const raw = ctx.cookies.get(LOGIN_COOKIE, { signed: true });
  ctx.cookies.set(LOGIN_COOKIE, null, { signed: true, overwrite: true });
  if (!raw) return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(raw, 'base64url').toString()) as AccountLoginState;
    return typeof parsed.state === 'string' && typeof parsed.verifier === 'string' ? { ...parsed, returnTo: safeReturnTo(parsed.returnTo) } : undefined;
  } catch {
    return undefined;
  }
}

/** Only paths on the account page: never an open redirect. */
export function safeReturnTo(value: unknown): string {
  return typeof value === 'string' && /^\/account(\/[\w/-]*)?(\?[\w=&%-]*)?$/.test(value) ? value : '/account';
}
