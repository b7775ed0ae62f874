import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { Context, Next } from 'koa';
import { errors } from 'oidc-provider';
import { linkOffer, proveAndLink } from '../flows/link.js';
import { decideAfterPasskeyProof, type RequestFacts } from '../flows/login.js';
import { finishSignIn, type SignInFinish } from '../flows/sign-in.js';
import { AccountDisabled } from '../flows/account-disabled.js';
import { translator } from '../i18n/index.js';
import type { RateLimitRule } from '../limits/rate-limiter.js';
import { hitAll } from '../limits/rate-limiter.js';
import { parseAuthenticationResponse, parsePasskeyName, parseRegistrationResponse, type PasskeyFailure } from '../methods/passkey.js';
import type { Services } from '../services.js';
import { accountBinding, readAccountSession, signedInRecently } from './account-session.js';
import { ACCOUNT_APP_CLIENT_ID } from '../oidc/account-app.js';
import { csrfHeaderMatches } from './csrf.js';
import { refuseNulInBody } from './input-guard.js';
import { interactionSession, passkeyOfferAccountId } from './interaction-session.js';
import { PASSKEY_BODIES, parseForm } from './forms.js';
import { applyUiLocales } from '../web/locale.js';

type Interaction = Awaited<ReturnType<Services['host']['current']['interactionDetails']>>;

/** Why a passkey request was refused: the JSON `error`; `message` is its text in the person's language. */
export type PasskeyRefusal =
  | PasskeyFailure
  | 'csrf' | 'session_expired' | 'stale_interaction' | 'not_signed_in' | 'reauth_required' | 'rate_limited' | 'unknown_account' | 'wrong_account'
  | 'account_disabled';

/** Each options request stores a challenge: a generous cap per IP keeps anyone from filling the table. */
export const PASSKEY_OPTIONS_LIMIT: RateLimitRule = { name: 'passkey-options:ip', limit: 120, windowSeconds: 15 * 60 };

/**
 * The WebAuthn ceremonies as JSON endpoints for views/assets/passkey.js: sign-in inside an
 * interaction, and adding a passkey from the account page. Every request carries the CSRF token in
 * `x-csrf-token`; every refusal is `{ error, message }` with a message the page can show as is.
 */
export function passkeyRoutes(services: Services): Router {
  const { host, accounts, passkeys, metrics, limiter, flows } = services;
  const { settings } = flows;
  const interactions = interactionSession(services);
  const router = new Router();

  const refuse = (ctx: Context, status: number, reason: PasskeyRefusal, extra: Record<string, unknown> = {}) => {
    ctx.status = status;
    ctx.body = { error: reason, message: translator(ctx.state.locale)(`passkey.error.${reason}`), ...extra };
  };
  const parseJson = bodyParser({ enableTypes: ['json'], jsonLimit: '64kb' });
  const refuseNul = refuseNulInBody();
  const json = (ctx: Context, next: Next) => parseJson(ctx, () => refuseNul(ctx, next));
  const guard = async (ctx: Context, next: Next) => {
    ctx.set('Cache-Control', 'no-store');
    if (!csrfHeaderMatches(ctx)) return refuse(ctx, 403, 'csrf');
    return next();
  };
  const failureStatus = (reason: PasskeyFailure) => (reason === 'already_registered' ? 409 : 400);

  /** The login interaction named in the path, or a refusal. */
  const interaction = async (ctx: Context): Promise<Interaction | undefined> => {
    let details: Interaction;
    try {
      details = await host.current.interactionDetails(ctx.req, ctx.res);
    } catch (err) {
      if (err instanceof errors.SessionNotFound) return void refuse(ctx, 400, 'session_expired');
      throw err;
    }
    applyUiLocales(ctx, details.params.ui_locales);
    if (details.uid !== ctx.params.uid || details.prompt.name !== 'login') return void refuse(ctx, 400, 'stale_interaction');
    return details;
  };
  const withinLimit = async (ctx: Context): Promise<boolean> => {
    const verdict = await hitAll(limiter, [[PASSKEY_OPTIONS_LIMIT, ctx.ip]]);
    if (verdict.allowed) return true;
    ctx.set('Retry-After', String(verdict.retryAfterSeconds));
    refuse(ctx, 429, 'rate_limited');
    return false;
  };

  router.post('/interaction/:uid/passkey/options', guard, json, async (ctx) => {
    const details = await interaction(ctx);
    if (!details || !(await withinLimit(ctx))) return;
    ctx.body = await passkeys.authenticationOptions(details.uid);
  });

  router.post('/interaction/:uid/passkey/verify', guard, json, async (ctx) => {
    const details = await interaction(ctx);
    if (!details) return;
    const response = parseAuthenticationResponse(parseForm(ctx, PASSKEY_BODIES.authentication).response);
    if (!response) return refuse(ctx, 400, 'invalid_response');
    const verified = await passkeys.verifyAuthentication(details.uid, response);
    if (!verified.ok) return refuse(ctx, failureStatus(verified.reason), verified.reason);
    const { proof } = verified;
    const account = await decideAfterPasskeyProof({ accounts }, proof);
    if (!account) return refuse(ctx, 400, 'unknown_account');
    await signedIn(ctx, details, () => finishSignIn(flows.signIn, interactions.signInRequest(ctx, details), account, proof));
  });

  // Right after signup (views/passkey-offer.eta): the account the interaction just created, and only
  // inside that interaction; the challenge is bound to it like a sign-in challenge.
  const newAccount = async (ctx: Context) => {
    const details = await interaction(ctx);
    if (!details) return undefined;
    const accountId = passkeyOfferAccountId(details);
    const account = accountId ? await accounts.findAccountById(accountId) : undefined;
    if (!account) return void refuse(ctx, 400, 'stale_interaction');
    return { details, account, binding: `signup:${details.uid}` };
  };

  router.post('/interaction/:uid/passkey/register/options', guard, json, async (ctx) => {
    const fresh = await newAccount(ctx);
    if (!fresh || !(await withinLimit(ctx))) return;
    ctx.body = await passkeys.registrationOptions(fresh.account, fresh.binding);
  });

  router.post('/interaction/:uid/passkey/register/verify', guard, json, async (ctx) => {
    const fresh = await newAccount(ctx);
    if (!fresh) return;
    const submitted = parseForm(ctx, PASSKEY_BODIES.registration);
    const response = parseRegistrationResponse(submitted.response);
    if (!response) return refuse(ctx, 400, 'invalid_response');
    const locale = ctx.state.locale;
    const name = parsePasskeyName(submitted.name) ?? translator(locale)('passkey.default_name');
    const added = await passkeys.verifyRegistration(fresh.account, fresh.binding, response, name);
    if (!added.ok) return refuse(ctx, failureStatus(added.reason), added.reason);
    const facts: RequestFacts = { ip: ctx.ip, userAgent: ctx.get('user-agent') || undefined, clientId: fresh.details.params.client_id as string | undefined };
    await settings.announce(fresh.account, 'passkey_added', { credential: added.passkey.id, name, synced: added.passkey.deviceType === 'multiDevice', afterSignup: true }, facts, locale);
    ctx.body = { redirectTo: fresh.details.returnTo };
  });

  // The link offer (src/http/upstream-routes.ts): a passkey of the very account the upstream identity
  // would be linked to proves owning it; a passkey of any other account is refused and links nothing.
  router.post('/interaction/:uid/link/passkey/verify', guard, json, async (ctx) => {
    const details = await interaction(ctx);
    if (!details) return;
    if (!(await linkOffer(flows.upstream, details.uid))) return refuse(ctx, 400, 'stale_interaction');
    const response = parseAuthenticationResponse(parseForm(ctx, PASSKEY_BODIES.authentication).response);
    if (!response) return refuse(ctx, 400, 'invalid_response');
    const verified = await passkeys.verifyAuthentication(details.uid, response);
    if (!verified.ok) return refuse(ctx, failureStatus(verified.reason), verified.reason);
    const request = interactions.signInRequest(ctx, details);
    const linked = await proveAndLink(flows.upstream, details.uid, verified.proof, request.facts, ctx.state.locale);
    if (!linked.ok) return refuse(ctx, 400, linked.reason === 'wrong_account' ? 'wrong_account' : 'stale_interaction');
    await signedIn(ctx, details, () => finishSignIn(flows.signIn, request, linked.account, linked.proof));
  });

  /**
   * The end of a passkey sign-in, as JSON: the browser navigates itself (a fetch cannot follow a
   * redirect into the relying party). A disabled account's refusal comes back as JSON, shown where
   * the passkey error shows (the pages' sign-ins render it as a page: src/http/errors.ts).
   */
  const signedIn = async (ctx: Context, details: Interaction, finishing: () => Promise<SignInFinish>) => {
    let finished: SignInFinish;
    try {
      finished = await finishing();
    } catch (err) {
      if (!(err instanceof AccountDisabled)) throw err;
      return refuse(ctx, 403, 'account_disabled');
    }
    if (finished.next === 'require_email') {
      ctx.body = { redirectTo: `/interaction/${encodeURIComponent(details.uid)}/require-email` };
      return;
    }
    metrics.signIns.inc({ method: finished.method });
    ctx.body = { redirectTo: await host.current.interactionResult(ctx.req, ctx.res, finished.result, { mergeWithLastSubmission: false }) };
  };

  /** The account-page session allowed to add a passkey now, or a refusal telling the page where to sign in. */
  const recentlySignedIn = async (ctx: Context) => {
    const session = await readAccountSession(host.current, ctx);
    const account = session ? await accounts.findAccountById(session.accountId) : undefined;
    if (!session || !account) return void refuse(ctx, 401, 'not_signed_in', { loginUrl: '/account/login?return=%2Faccount' });
    if (!signedInRecently(session)) return void refuse(ctx, 403, 'reauth_required', { loginUrl: '/account/login?return=%2Faccount&reauth=1' });
    return { session, account };
  };

  router.post('/account/passkeys/options', guard, json, async (ctx) => {
    const me = await recentlySignedIn(ctx);
    if (!me || !(await withinLimit(ctx))) return;
    ctx.body = await passkeys.registrationOptions(me.account, accountBinding(me.session));
  });

  router.post('/account/passkeys/verify', guard, json, async (ctx) => {
    const me = await recentlySignedIn(ctx);
    if (!me) return;
    const submitted = parseForm(ctx, PASSKEY_BODIES.registration);
    const response = parseRegistrationResponse(submitted.response);
    if (!response) return refuse(ctx, 400, 'invalid_response');
    const locale = ctx.state.locale;
    const name = parsePasskeyName(submitted.name) ?? translator(locale)('passkey.default_name');
    const added = await passkeys.verifyRegistration(me.account, accountBinding(me.session), response, name);
    if (!added.ok) return refuse(ctx, failureStatus(added.reason), added.reason);
    const facts: RequestFacts = { ip: ctx.ip, userAgent: ctx.get('user-agent') || undefined, clientId: ACCOUNT_APP_CLIENT_ID };
    await settings.announce(me.account, 'passkey_added', { credential: added.passkey.id, name, synced: added.passkey.deviceType === 'multiDevice' }, facts, locale);
    ctx.body = { redirectTo: '/account?notice=passkey_added' };
  });

  return router;
}
