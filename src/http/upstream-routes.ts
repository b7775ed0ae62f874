import Router from '@koa/router';
import type { Context } from 'koa';
import type { Account } from '../accounts/account-store.js';
import { EmailAlreadyRegistered } from '../accounts/account-store.js';
import { checkEmailAddress, emailProblemMessage, maskedEmail, maskEmail, parseEmailAddress } from '../accounts/email-address.js';
import { maskedPhone, maskPhone } from '../accounts/phone-number.js';
import type { UpstreamProviderName } from '../accounts/upstream-identity-store.js';
import { withTransaction } from '../db/database.js';
import { AccountSettings } from '../flows/account-settings.js';
import { completeSignIn } from '../flows/login.js';
import {
  completeLink, confirmUpstreamSignup, decideAfterUpstreamLogin, linkOptionsFor, parkUpstreamReturn, pausedSignIn, pendingUpstream, vouchedEmail,
  type UpstreamDeps,
} from '../flows/upstream.js';
import type { CodeStart, CodeVerification } from '../methods/one-time-code-method.js';
import { parseCode } from '../methods/one-time-code.js';
import type { Proof } from '../accounts/proof.js';
import type { Services } from '../services.js';
import { isUpstreamProviderName, UpstreamError } from '../upstream/index.js';
import { requireCsrf } from './csrf.js';
import { codeError, passkeyOfferMarker } from './interaction-routes.js';
import { interactionSession, type Interaction } from './interaction-session.js';
import { formBody, page, type PageState } from './page.js';
import { authorizationUrlOf, refuseUpstreamInAppBrowser } from './in-app-browser-guidance.js';
import { upstreamBrowserCookies } from './upstream-browser-cookies.js';

/** Where Google and Apple send people back (register these at each provider). */
export function upstreamRedirectUri(issuer: string, provider: UpstreamProviderName): string {
  return `${issuer}/upstream/${provider}/callback`;
}

/**
 * Sign-in with Google and Apple inside an interaction, and what follows it (src/flows/upstream.ts):
 * the link offer with proof of ownership, the signup confirmation, and the email a client requires.
 *
 * Every trip to Google or Apple is bound to the browser that began it: `begin` gives that browser a
 * binding cookie, and the callback consumes the pending login only when the same browser brings the
 * cookie back (an authorization URL forwarded to someone else's browser changes nothing there).
 * Apple's answer is a cross-site POST that carries no SameSite=Lax cookie, so that POST only holds
 * the answer and redirects (303) to a same-site GET, where the cookie is present and the check made.
 * After the check the outcome is parked for the interaction, and the browser sent to a page of that
 * interaction, which only the browser holding the interaction's cookie can open.
 */
export function upstreamRoutes(services: Services): Router {
  const { upstream, identities, accounts, proofs, emailOtp, smsOtp, passkeyStore, db, metrics, config, upstreamCipher, host } = services;
  const { load, finish, seeOther, clientName, facts, holdForRequiredEmail } = interactionSession(services);
  const deps: UpstreamDeps = { pool: db.pool, accounts, identities, proofs, cipher: upstreamCipher };
  const settings = new AccountSettings({ pool: db.pool, accounts, mailer: services.mailer, log: services.log });
  const router = new Router();
  const inInteraction = [formBody(), requireCsrf()];
  const providerOf = (ctx: Context): UpstreamProviderName | undefined => {
    const p = ctx.params.provider;
    return isUpstreamProviderName(p) && upstream.isEnabled(p) ? p : undefined;
  };
  const body = (ctx: Context) => (ctx.request.body ?? {}) as Record<string, unknown>;
  const browserOf = (ctx: Context) => upstreamBrowserCookies(ctx, { issuer: config.issuer, secureCookies: services.secureCookies });

  /** A readable page for anything that went wrong upstream; nothing was linked or created. */
  const failure = (ctx: Context, provider: UpstreamProviderName | undefined, reason: string, uid?: string) => {
    ctx.status = reason === 'timeout' || reason === 'unavailable' ? 502 : 400;
    page(ctx, services, 'upstream-error', {
      providerName: provider ? PROVIDER_NAMES[provider] : '',
      messageKey: `upstream.error.${messageFor(reason)}`,
      retryHref: uid ? `/interaction/${encodeURIComponent(uid)}?choose=1` : undefined,
    });
  };
  /**
   * The answer came back in a browser that did not begin the attempt: nothing happened, and this
   * browser starts again on its own. Never a link into the other browser's interaction (it may be an
   * attacker's); the account page is Tsunagi's own, so it is safe to offer.
   */
  const otherBrowser = (ctx: Context, provider: UpstreamProviderName, err: UpstreamError) => {
    const fromAccountPage = err.purpose === 'account_link';
    ctx.status = 400;
    page(ctx, services, 'upstream-error', {
      providerName: PROVIDER_NAMES[provider],
      messageKey: fromAccountPage ? 'upstream.error.other_browser_account' : 'upstream.error.other_browser',
      retryHref: fromAccountPage ? '/account' : undefined,
      retryKey: 'upstream.error.start_again_here',
    });
  };
  const upstreamFailure = (ctx: Context, err: unknown, provider: UpstreamProviderName | undefined, uid?: string) => {
    if (!(err instanceof UpstreamError)) throw err;
    metrics.signIns.inc({ method: `upstream_failed_${err.reason}` });
    if (err.reason === 'other_browser') {
      // Someone opened a forwarded authorization URL, or a person switched browsers midway.
      services.log.warn({ provider, purpose: err.purpose, ip: ctx.ip }, 'upstream answer arrived in a browser that did not begin the attempt');
      return otherBrowser(ctx, err.provider, err);
    }
    services.log.info({ provider, reason: err.reason, detail: err.message }, 'upstream sign-in failed');
    return failure(ctx, provider, err.reason, uid ?? err.pending?.interactionUid);
  };

  const clientRequiresEmail = async (details: Interaction): Promise<boolean> => {
    const client = await host.current.Client.find(details.params.client_id as string);
    return (client as unknown as { require_email?: boolean } | undefined)?.require_email === true;
  };

  /**
   * Signs `account` in at the end of any upstream path. A client that requires an email, and an
   * account without a verified one, first go through the require-email step (the sign-in waits,
   * parked, and is not stored in the interaction, so it cannot be resumed around that step).
   */
  const signIn = async (ctx: Context, details: Interaction, account: Account, proof: Proof, opts: { newAccount?: boolean } = {}) => {
    if (await holdForRequiredEmail(details, account, proof)) return seeOther(ctx, '/require-email');
    metrics.signIns.inc({ method: proof.method });
    const result = await completeSignIn({ accounts }, account, proof, facts(ctx, details));
    if (!opts.newAccount) return finish(ctx, result);
    await host.current.interactionResult(ctx.req, ctx.res, { ...result, ...passkeyOfferMarker }, { mergeWithLastSubmission: false });
    seeOther(ctx, '/passkey-offer');
  };

  // ---- 1. Off to Google or Apple (the login page's buttons, or the client's idp_hint) ----
  const toProvider = async (ctx: Context, details: Interaction, provider: UpstreamProviderName | undefined) => {
    if (!provider) return failure(ctx, undefined, 'not_configured', details.uid);
    // Google answers an in-app browser (LINE, Facebook, ...) with 403 disallowed_useragent: guide instead.
    if (await refuseUpstreamInAppBrowser(ctx, services, details, provider)) return;
    // The client's login_hint is passed on to Google (it preselects that Google account).
    const hint = details.params.login_hint;
    try {
      const { authorizationUrl } = await upstream.begin({
        provider, interactionUid: details.uid, redirectUri: upstreamRedirectUri(config.issuer, provider), purpose: 'login', browser: browserOf(ctx),
        loginHint: provider === 'google' && typeof hint === 'string' && hint.length <= 254 ? hint : undefined,
      });
      ctx.redirect(authorizationUrl);
      ctx.status = 303;
    } catch (err) {
      return upstreamFailure(ctx, err, provider, details.uid);
    }
  };
  router.post('/interaction/:uid/upstream/:provider', ...inInteraction, async (ctx) => toProvider(ctx, await load(ctx), providerOf(ctx)));
  // GET only for the provider the client named in idp_hint (a link elsewhere cannot start a sign-in).
  router.get('/interaction/:uid/upstream/:provider/hinted', async (ctx) => {
    const details = await load(ctx);
    const provider = providerOf(ctx);
    if (!provider || details.params.idp_hint !== provider) return seeOther(ctx, '?choose=1');
    return toProvider(ctx, details, provider);
  });

  // ---- 2. The answer (Google: GET with a query; Apple: a cross-site form POST, then a same-site GET) ----
  const callback = async (ctx: Context, provider: UpstreamProviderName, params: Readonly<Record<string, unknown>>) => {
    let completed;
    try {
      completed = await upstream.complete({ provider, params, redirectUri: upstreamRedirectUri(config.issuer, provider), browser: browserOf(ctx) });
    } catch (err) {
      return upstreamFailure(ctx, err, provider);
    }
    const { pending, identity } = completed;
    const uid = pending.interactionUid;
    if (pending.purpose === 'login') {
      const decision = await decideAfterUpstreamLogin(deps, identity, uid);
      if (decision.next === 'refused') return failure(ctx, provider, decision.reason, uid);
      if (decision.next === 'sign_in') {
        await parkUpstreamReturn(deps, uid, { kind: 'account', accountId: decision.account.id, via: identity });
        return seeOther(ctx, '/upstream/continue', uid);
      }
      return seeOther(ctx, decision.next === 'offer_link' ? '/link' : '/upstream-signup', uid);
    }
    if (pending.purpose === 'link_proof') {
      // Proof of owning the account through its other linked identity: exactly that identity, nothing else.
      const linked = await identities.findByIssuerSubject(identity.issuer, identity.subject);
      if (!linked || linked.accountId !== pending.expectedAccountId || identity.subject !== pending.expectedSubject) {
        return failure(ctx, provider, 'not_the_linked_account', uid);
      }
      const paused = pausedSignIn(linked);
      if (paused) return failure(ctx, provider, paused, uid);
      await identities.refreshAttributes(linked.id, {
        email: identity.email ?? null, emailVerified: identity.emailVerified, isPrivateEmail: identity.isPrivateRelay, name: identity.name, refreshToken: identity.refreshToken,
      });
      await parkUpstreamReturn(deps, uid, { kind: 'account', accountId: linked.accountId, via: identity });
      return seeOther(ctx, '/upstream/continue', uid);
    }
    // Linking from the account page: the account-page session picks it up on /account.
    if (!pending.expectedAccountId) return failure(ctx, provider, 'bad_state');
    await parkUpstreamReturn(deps, uid, { kind: 'link_to_account', claims: identity, accountId: pending.expectedAccountId });
    ctx.redirect('/account/providers/continue');
    ctx.status = 303;
  };
  router.get('/upstream/:provider/callback', async (ctx) => {
    const provider = providerOf(ctx);
    if (!provider) return failure(ctx, undefined, 'not_configured');
    return callback(ctx, provider, ctx.query as Record<string, unknown>);
  });
  // Apple's form_post: a cross-site POST, without the browser's SameSite=Lax binding cookie. It
  // decides nothing: the answer is held, and the browser comes back by a top-level GET (which does
  // carry Lax cookies, on http in development too) with a reference only it has seen.
  router.post('/upstream/:provider/callback', formBody(), async (ctx) => {
    const provider = providerOf(ctx);
    if (!provider) return failure(ctx, undefined, 'not_configured');
    try {
      const { reference } = await upstream.holdFormPostAnswer({ provider, params: body(ctx) });
      ctx.redirect(`${config.issuer}/upstream/${provider}/answer?${new URLSearchParams({ ref: reference })}`);
      ctx.status = 303;
    } catch (err) {
      return upstreamFailure(ctx, err, provider);
    }
  });
  router.get('/upstream/:provider/answer', async (ctx) => {
    const provider = providerOf(ctx);
    if (!provider) return failure(ctx, undefined, 'not_configured');
    let params;
    try {
      params = await upstream.takeHeldAnswer({ provider, reference: ctx.query.ref });
    } catch (err) {
      return upstreamFailure(ctx, err, provider);
    }
    return callback(ctx, provider, params);
  });

  // ---- 3. The interaction's own browser picks up a checked answer ----
  router.get('/interaction/:uid/upstream/continue', async (ctx) => {
    const details = await load(ctx);
    const taken = await proofs.consume(db.pool, details.uid, 'upstream_return', new Date());
    const subject = taken?.proof.subject;
    if (!taken || subject?.kind !== 'account') return seeOther(ctx, '');
    const waiting = await pendingUpstream(deps, details.uid, 'upstream_link');
    if (waiting?.linkToAccountId === subject.accountId) {
      const linked = await completeLink(deps, details.uid, taken.proof, facts(ctx, details));
      if (!linked.ok) return failure(ctx, undefined, linked.reason, details.uid);
      await settings.notify(linked.account, 'upstream_linked', ctx.state.locale);
      return signIn(ctx, details, linked.account, linked.proof);
    }
    const account = await accounts.findAccountById(subject.accountId);
    if (!account) return seeOther(ctx, '');
    return signIn(ctx, details, account, taken.proof);
  });

  // ---- 4. Link offer: an account already has this email; prove it is yours to link ----
  const linkTarget = async (details: Interaction) => {
    const waiting = await pendingUpstream(deps, details.uid, 'upstream_link');
    const account = waiting?.linkToAccountId ? await accounts.findAccountById(waiting.linkToAccountId) : undefined;
    return waiting && account ? { identity: waiting.identity, account } : undefined;
  };
  const linkBinding = (uid: string) => `link:${uid}`;
  /** A code or passkey proved `accountId`: link when it is the account the link offer is for. */
  const proveAndLink = async (ctx: Context, details: Interaction, accountId: string | undefined, verified: Proof) => {
    const target = await linkTarget(details);
    if (!target) return seeOther(ctx, '');
    if (accountId !== target.account.id) return failure(ctx, undefined, 'wrong_account', details.uid);
    const ownership: Proof = { ...verified, interactionUid: details.uid, subject: { kind: 'account', accountId } };
    const linked = await completeLink(deps, details.uid, ownership, facts(ctx, details));
    if (!linked.ok) return failure(ctx, undefined, linked.reason, details.uid);
    await settings.notify(linked.account, 'upstream_linked', ctx.state.locale);
    return signIn(ctx, details, linked.account, linked.proof);
  };

  router.get('/interaction/:uid/link', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    const target = await linkTarget(details);
    if (!target) return seeOther(ctx, '');
    const options = await linkOptionsFor(
      { accounts, identities, passkeyCount: async (id) => (await passkeyStore.listForAccount(id)).length },
      target.account, { sms: Boolean(smsOtp), providers: upstream.enabledProviders() }, target.identity.provider,
    );
    page(ctx, services, 'link', {
      uid: details.uid, clientName: await clientName(details), providerName: PROVIDER_NAMES[target.identity.provider],
      email: target.identity.email ?? '', options,
      upstreamNames: Object.fromEntries(options.upstream.map((u) => [u.provider, PROVIDER_NAMES[u.provider]])),
    });
  });

  router.post('/interaction/:uid/link/decline', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    await proofs.discard(details.uid, 'upstream_link', new Date());
    seeOther(ctx, '');
  });

  const startFailed = (ctx: Context, started: Exclude<CodeStart, { ok: true }>) => {
    if (started.reason === 'rate_limited') ctx.set('Retry-After', String(started.retryAfterSeconds));
    return failure(ctx, undefined, started.reason === 'rate_limited' ? 'code_rate_limited' : 'code_not_sent', ctx.params.uid);
  };

  router.post('/interaction/:uid/link/email', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    const target = await linkTarget(details);
    const email = target?.account.emails.find((e) => e.verifiedAt && e.key === body(ctx).key);
    if (!target || !email) return seeOther(ctx, '/link');
    const started = await emailOtp.start({
      interactionUid: linkBinding(details.uid), email: { address: email.address, key: email.key }, ip: ctx.ip, locale: ctx.state.locale, accountId: target.account.id,
    });
    metrics.otpSends.inc({ channel: 'email', result: started.ok ? 'sent' : started.reason });
    if (!started.ok) return startFailed(ctx, started);
    seeOther(ctx, '/link/code');
  });

  // The code page keeps the linking context: "Confirm it's you to link Apple", not just "Check your email".
  const linkCodeTitle = async (details: Interaction) => {
    const target = await linkTarget(details);
    return target ? { titleKey: 'link.code_title', titleParams: { provider: PROVIDER_NAMES[target.identity.provider] } } : {};
  };
  const linkCodePage = (uid: string, masked: string, key: string, state: PageState = {}) => ({
    uid, target: masked, action: `/interaction/${uid}/link/code`, resendAction: `/interaction/${uid}/link/email`, resendField: 'key', resendValue: key,
    backHref: `/interaction/${uid}/link`, backKey: 'link.other_way', ...state,
  });
  const renderLinkCode = async (ctx: Context, details: Interaction, state: PageState = {}) => {
    const address = await emailOtp.pendingTarget(linkBinding(details.uid));
    if (!address) return seeOther(ctx, '/link');
    const key = parseEmailAddress(address)?.key ?? '';
    page(ctx, services, 'code', { ...linkCodePage(details.uid, maskEmail(address), key, state), maskedTarget: maskedEmail(address), ...await linkCodeTitle(details) });
  };
  router.get('/interaction/:uid/link/code', ...inInteraction, async (ctx) => renderLinkCode(ctx, await load(ctx)));
  router.post('/interaction/:uid/link/code', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    const code = parseCode(body(ctx).code);
    if (!code) {
      ctx.status = 400;
      return renderLinkCode(ctx, details, { error: 'code.error.format' });
    }
    const verified = await emailOtp.verify({ interactionUid: linkBinding(details.uid), code });
    if (!verified.ok) return codeFailed(ctx, details, verified, renderLinkCode);
    if (verified.proof.subject.kind !== 'email') return seeOther(ctx, '/link');
    const owner = await accounts.findAccountByVerifiedEmail({ address: verified.proof.subject.address, key: verified.proof.subject.key });
    return proveAndLink(ctx, details, owner?.id, verified.proof);
  });

  const codeFailed = async (
    ctx: Context, details: Interaction, verified: Exclude<CodeVerification, { ok: true }>,
    render: (ctx: Context, details: Interaction, state: PageState) => Promise<void>,
  ) => {
    if (verified.reason === 'no_code') return seeOther(ctx, '/link');
    ctx.status = 400;
    return render(ctx, details, codeError(verified));
  };

  router.post('/interaction/:uid/link/sms', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    const target = await linkTarget(details);
    const phone = target?.account.phones.find((p) => p.verifiedAt && p.phone === body(ctx).phone);
    if (!target || !phone || !smsOtp) return seeOther(ctx, '/link');
    const started = await smsOtp.start({ binding: linkBinding(details.uid), phone: phone.phone, ip: ctx.ip, locale: ctx.state.locale, accountId: target.account.id });
    metrics.otpSends.inc({ channel: 'sms', result: started.ok ? 'sent' : started.reason });
    if (!started.ok) return startFailed(ctx, started);
    seeOther(ctx, '/link/sms-code');
  });

  const renderLinkSmsCode = async (ctx: Context, details: Interaction, state: PageState = {}) => {
    const phone = smsOtp ? await smsOtp.pendingTarget(linkBinding(details.uid)) : undefined;
    if (!phone) return seeOther(ctx, '/link');
    page(ctx, services, 'code', {
      uid: details.uid, target: maskPhone(phone), maskedTarget: maskedPhone(phone), titleKey: 'code.sms.title', leadKey: 'link.sms_lead', ...await linkCodeTitle(details),
      action: `/interaction/${details.uid}/link/sms-code`, resendAction: `/interaction/${details.uid}/link/sms`, resendField: 'phone', resendValue: phone,
      backHref: `/interaction/${details.uid}/link`, backKey: 'link.other_way', ...state,
    });
  };
  router.get('/interaction/:uid/link/sms-code', ...inInteraction, async (ctx) => renderLinkSmsCode(ctx, await load(ctx)));
  router.post('/interaction/:uid/link/sms-code', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    const code = parseCode(body(ctx).code);
    if (!code || !smsOtp) {
      ctx.status = 400;
      return renderLinkSmsCode(ctx, details, { error: 'code.error.format' });
    }
    const verified = await smsOtp.verify({ interactionUid: linkBinding(details.uid), code });
    if (!verified.ok) return codeFailed(ctx, details, verified, renderLinkSmsCode);
    if (verified.proof.subject.kind !== 'phone') return seeOther(ctx, '/link');
    const owner = await accounts.findAccountByVerifiedPhone(verified.proof.subject.phone);
    return proveAndLink(ctx, details, owner?.id, verified.proof);
  });

  // Proof through the account's other upstream identity, with login_hint so the right account is picked.
  router.post('/interaction/:uid/link/upstream/:provider', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    const provider = providerOf(ctx);
    const target = await linkTarget(details);
    if (!target || !provider) return seeOther(ctx, '/link');
    const linked = (await identities.listForAccount(target.account.id)).find((i) => i.provider === provider);
    if (!linked || provider === target.identity.provider) return seeOther(ctx, '/link');
    const paused = pausedSignIn(linked);
    if (paused) return failure(ctx, provider, paused, details.uid);
    if (await refuseUpstreamInAppBrowser(ctx, services, details, provider)) return;
    try {
      const { authorizationUrl } = await upstream.begin({
        provider, interactionUid: details.uid, redirectUri: upstreamRedirectUri(config.issuer, provider), purpose: 'link_proof', browser: browserOf(ctx),
        expectedAccountId: target.account.id, expectedSubject: linked.subject,
        loginHint: provider === 'google' ? linked.subject : undefined,
      });
      ctx.redirect(authorizationUrl);
      ctx.status = 303;
    } catch (err) {
      return upstreamFailure(ctx, err, provider, details.uid);
    }
  });

  // ---- 5. Signup confirmation for an upstream identity nobody has ----
  router.get('/interaction/:uid/upstream-signup', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    const waiting = await pendingUpstream(deps, details.uid, 'upstream_signup');
    if (!waiting) return seeOther(ctx, '');
    const { identity } = waiting;
    const email = vouchedEmail(identity);
    page(ctx, services, 'upstream-signup', {
      uid: details.uid, clientName: await clientName(details), providerName: PROVIDER_NAMES[identity.provider],
      name: identity.name ?? '', email: email?.address ?? '',
      emailNote: email ? '' : identity.isPrivateRelay ? 'upstream.signup.relay' : identity.email ? 'upstream.signup.unverified' : 'upstream.signup.no_email',
      emailAsked: !email && (await clientRequiresEmail(details)),
    });
  });

  router.post('/interaction/:uid/upstream-signup', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    const outcome = await confirmUpstreamSignup(deps, details.uid, facts(ctx, details));
    if (!outcome.ok) {
      if (outcome.reason === 'no_pending_signup') return seeOther(ctx, '');
      return failure(ctx, undefined, outcome.reason, details.uid);
    }
    metrics.signups.inc();
    await settings.notify(outcome.account, 'signup', ctx.state.locale);
    return signIn(ctx, details, outcome.account, outcome.proof, { newAccount: true });
  });

  router.post('/interaction/:uid/upstream-signup/cancel', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    await proofs.discard(details.uid, 'upstream_signup', new Date());
    seeOther(ctx, '');
  });

  // ---- 6. The client requires an email and the account has none: ask for one, verify it by code ----
  const requireEmailBinding = (uid: string) => `require-email:${uid}`;
  const heldSignIn = async (details: Interaction) => proofs.peek(details.uid, 'require_email', new Date());

  /**
   * The typed address belongs to another account. Nothing moves between accounts here: the page
   * offers a different address (the form again), or signing in to that account instead, which
   * starts this client's authorization again with the address as login_hint, so that account is
   * proven with its own methods; the account just made stays as it is.
   */
  const renderAddressTaken = async (ctx: Context, details: Interaction, typed: string) => {
    ctx.status = 409;
    page(ctx, services, 'require-email', {
      uid: details.uid, clientName: await clientName(details), email: typed, error: 'require_email.error.taken', taken: true,
      signInInsteadHref: authorizationUrlOf(services.config.issuer, details, {
        prompt: String(details.params.prompt ?? '').split(' ').includes('consent') ? 'login consent' : 'login',
        login_hint: typed, id_token_hint: undefined, idp_hint: undefined, max_age: undefined,
      }),
    });
  };

  router.get('/interaction/:uid/require-email', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    if (!(await heldSignIn(details))) return seeOther(ctx, '');
    page(ctx, services, 'require-email', { uid: details.uid, clientName: await clientName(details), email: '' });
  });

  router.post('/interaction/:uid/require-email', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    const held = await heldSignIn(details);
    if (!held || held.proof.subject.kind !== 'account') return seeOther(ctx, '');
    const raw = body(ctx).email;
    const typed = checkEmailAddress(raw);
    const again = async (status: number, error: string, extra: PageState = {}) => {
      ctx.status = status;
      page(ctx, services, 'require-email', { uid: details.uid, clientName: await clientName(details), email: typeof raw === 'string' ? raw : '', error, ...extra });
    };
    if (!typed.ok) return again(400, emailProblemMessage(typed.problem));
    const { email } = typed;
    // An address someone else verified is refused here, before any code: it never moves between accounts.
    const owner = await accounts.findAccountByVerifiedEmail(email);
    if (owner && owner.id !== held.proof.subject.accountId) return renderAddressTaken(ctx, details, email.address);
    const started = await emailOtp.start({
      interactionUid: requireEmailBinding(details.uid), email, ip: ctx.ip, locale: ctx.state.locale, accountId: held.proof.subject.accountId,
    });
    metrics.otpSends.inc({ channel: 'email', result: started.ok ? 'sent' : started.reason });
    if (!started.ok) {
      if (started.reason === 'rate_limited') ctx.set('Retry-After', String(started.retryAfterSeconds));
      return again(started.reason === 'rate_limited' ? 429 : 503, started.reason === 'rate_limited' ? 'login.error.rate_limited' : 'login.error.delivery_failed', {
        retryAfterMinutes: started.reason === 'rate_limited' ? Math.ceil(started.retryAfterSeconds / 60) : undefined,
      });
    }
    seeOther(ctx, '/require-email/code');
  });

  const renderRequireEmailCode = async (ctx: Context, details: Interaction, state: PageState = {}) => {
    const address = await emailOtp.pendingTarget(requireEmailBinding(details.uid));
    if (!address) return seeOther(ctx, '/require-email');
    page(ctx, services, 'code', {
      uid: details.uid, target: address, action: `/interaction/${details.uid}/require-email/code`,
      resendAction: `/interaction/${details.uid}/require-email`, resendField: 'email', resendValue: address,
      backHref: `/interaction/${details.uid}/require-email`, ...state,
    });
  };
  router.get('/interaction/:uid/require-email/code', ...inInteraction, async (ctx) => renderRequireEmailCode(ctx, await load(ctx)));
  router.post('/interaction/:uid/require-email/code', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    const code = parseCode(body(ctx).code);
    if (!code) {
      ctx.status = 400;
      return renderRequireEmailCode(ctx, details, { error: 'code.error.format' });
    }
    const verified = await emailOtp.verify({ interactionUid: requireEmailBinding(details.uid), code });
    if (!verified.ok) {
      if (verified.reason === 'no_code') return seeOther(ctx, '/require-email');
      ctx.status = 400;
      return renderRequireEmailCode(ctx, details, codeError(verified));
    }
    const proven = verified.proof.subject;
    if (proven.kind !== 'email') return seeOther(ctx, '/require-email');
    const outcome = await withTransaction(db.pool, async (tx) => {
      const held = await proofs.consume(tx, details.uid, 'require_email', new Date());
      if (!held || held.proof.subject.kind !== 'account') return { ok: false as const, reason: 'expired' };
      const accountId = held.proof.subject.accountId;
      if (!(await accounts.lockAccount(tx, accountId))) return { ok: false as const, reason: 'expired' };
      try {
        await accounts.addVerifiedEmail(tx, accountId, { address: proven.address, key: proven.key });
      } catch (err) {
        if (err instanceof EmailAlreadyRegistered) return { ok: false as const, reason: 'taken' };
        throw err;
      }
      await accounts.recordAuditEvent({ type: 'email_added', accountId, ...facts(ctx, details), data: { email: proven.address, requiredBy: details.params.client_id } }, tx);
      return { ok: true as const, accountId, proof: held.proof };
    });
    if (!outcome.ok) {
      if (outcome.reason === 'expired') return seeOther(ctx, '');
      return renderAddressTaken(ctx, details, proven.address);
    }
    const account = await accounts.findAccountById(outcome.accountId);
    if (!account) return seeOther(ctx, '');
    return signIn(ctx, details, account, outcome.proof);
  });

  return router;
}

export const PROVIDER_NAMES: Record<UpstreamProviderName, string> = { google: 'Google', apple: 'Apple' };

/** The answer came back but failed a check: one message for all, the reason goes to the log. */
const UNTRUSTED_ANSWER = new Set(['invalid_id_token', 'wrong_issuer', 'wrong_audience', 'wrong_nonce', 'expired', 'bad_signature', 'token_exchange_failed', 'upstream_error']);

function messageFor(reason: string): UpstreamMessage | 'untrusted_answer' | 'generic' {
  const own = UPSTREAM_MESSAGES.find((m) => m === reason);
  if (own) return own;
  return UNTRUSTED_ANSWER.has(reason) ? 'untrusted_answer' : 'generic';
}

/** Reasons with a message of their own (views/locales: upstream.error.<reason>). */
const UPSTREAM_MESSAGES = [
  'access_denied', 'timeout', 'unavailable', 'bad_state', 'replayed', 'other_browser', 'state_expired', 'not_configured', 'not_the_linked_account',
  'wrong_account', 'already_linked', 'provider_already_linked', 'email_taken', 'no_pending_link', 'code_rate_limited', 'code_not_sent',
  'upstream_paused', 'upstream_disabled',
] as const;
type UpstreamMessage = (typeof UPSTREAM_MESSAGES)[number];
