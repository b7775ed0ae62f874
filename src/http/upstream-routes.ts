import Router from '@koa/router';
import type { Context } from 'koa';
import { checkEmailAddress, emailProblemMessage, parseEmailAddress } from '../accounts/email-address.js';
import type { UpstreamProviderName } from '../accounts/upstream-identity-store.js';
import type { CodeBinding, CodeSendRefusal, CodeVerifyRefusal } from '../flows/code-step.js';
import { declineLink, linkOffer, linkOfferOptions, proveAndLink, resumeUpstreamReturn, startLinkProof } from '../flows/link.js';
import { askRequiredEmail, completeRequiredEmail, heldSignIn } from '../flows/require-email.js';
import { finishSignIn } from '../flows/sign-in.js';
import { SIGN_IN_ONLY_UNLINKED, takeUpstreamAnswer } from '../flows/upstream.js';
import { cancelUpstreamSignup, signUpWithUpstream, upstreamSignupOffer } from '../flows/upstream-signup.js';
import type { Proof } from '../accounts/proof.js';
import type { Services } from '../services.js';
import { isUpstreamProviderName, UpstreamError } from '../upstream/index.js';
import { upstreamPolicyOf, type UpstreamPolicy } from '../oidc/client-metadata.js';
import { codePage, countSend, refuseCode, refuseSend } from './code-step.js';
import { requireCsrf } from './csrf.js';
import { interactionSession, type Interaction } from './interaction-session.js';
import { FORMS, parseForm } from './forms.js';
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
  const { upstream, codes, passkeyStore, metrics, config, flows, host } = services;
  const { load, seeOther, clientName, facts, clientRequiresEmail, signInRequest, signedIn } = interactionSession(services);
  const deps = flows.upstream;
  /** The upstream_policy of the client an interaction signs in to (an interaction gone keeps the default). */
  const upstreamPolicyOfInteraction = async (uid: string): Promise<UpstreamPolicy> => {
    const interaction = await host.current.Interaction.find(uid);
    const clientId = interaction?.params.client_id;
    return typeof clientId === 'string' ? upstreamPolicyOf(await host.current.Client.find(clientId)) : 'full';
  };
  const router = new Router();
  const inInteraction = [formBody(), requireCsrf()];
  const providerOf = (ctx: Context): UpstreamProviderName | undefined => {
    const p = ctx.params.provider;
    return isUpstreamProviderName(p) && upstream.isEnabled(p) ? p : undefined;
  };
  const body = (ctx: Context) => (ctx.request.body ?? {}) as Record<string, unknown>;
  const request = (ctx: Context) => ({ ip: ctx.ip, locale: ctx.state.locale });
  const browserOf = (ctx: Context) => upstreamBrowserCookies(ctx, { issuer: config.issuer, secureCookies: services.secureCookies });

  /** A readable page for anything that went wrong upstream; nothing was linked or created. */
  const failure = (ctx: Context, provider: UpstreamProviderName | undefined, reason: string, uid?: string) => {
    ctx.status = reason === 'timeout' || reason === 'unavailable' ? 502 : 400;
    page(ctx, services, 'upstream-error', {
      providerName: provider ? PROVIDER_NAMES[provider] : '',
      messageKey: `upstream.error.${messageFor(reason)}`,
      retryHref: uid ? `/interaction/${encodeURIComponent(uid)}?choose=1` : undefined,
      // signin_only: the identity is linked from the account page, after signing in another way there.
      ...(reason === SIGN_IN_ONLY_UNLINKED ? { settingsHref: '/account', nothingChangedKey: 'upstream.error.nothing_written' } : {}),
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
  /** Off to Google or Apple; `begin` binds the attempt to this browser. */
  const redirectToProvider = async (ctx: Context, provider: UpstreamProviderName, uid: string, begin: Omit<Parameters<typeof upstream.begin>[0], 'provider' | 'interactionUid' | 'redirectUri' | 'browser'>) => {
    try {
      const { authorizationUrl } = await upstream.begin({
        provider, interactionUid: uid, redirectUri: upstreamRedirectUri(config.issuer, provider), browser: browserOf(ctx), ...begin,
      });
      ctx.redirect(authorizationUrl);
      ctx.status = 303;
    } catch (err) {
      return upstreamFailure(ctx, err, provider, uid);
    }
  };

  // ---- 1. Off to Google or Apple (the login page's buttons, or the client's idp_hint) ----
  const toProvider = async (ctx: Context, details: Interaction, provider: UpstreamProviderName | undefined) => {
    if (!provider) return failure(ctx, undefined, 'not_configured', details.uid);
    // Google answers an in-app browser (LINE, Facebook, ...) with 403 disallowed_useragent: guide instead.
    if (await refuseUpstreamInAppBrowser(ctx, services, details, provider)) return;
    // The client's login_hint is passed on to Google (it preselects that Google account).
    const hint = details.params.login_hint;
    return redirectToProvider(ctx, provider, details.uid, {
      purpose: 'login', loginHint: provider === 'google' && typeof hint === 'string' && hint.length <= 254 ? hint : undefined,
    });
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
    const policy = completed.pending.purpose === 'login' ? await upstreamPolicyOfInteraction(completed.pending.interactionUid) : 'full';
    const after = await takeUpstreamAnswer(deps, completed.pending, completed.identity, policy);
    switch (after.next) {
      case 'refused': return failure(ctx, provider, after.reason, after.interactionUid);
      case 'continue': return seeOther(ctx, '/upstream/continue', after.interactionUid);
      case 'offer_link': return seeOther(ctx, '/link', after.interactionUid);
      case 'confirm_signup': return seeOther(ctx, '/upstream-signup', after.interactionUid);
      case 'account_page':
        ctx.redirect('/account/providers/continue');
        ctx.status = 303;
    }
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

  // ---- 3. The interaction's own browser picks up a checked answer (src/flows/link.ts resumeUpstreamReturn) ----
  router.get('/interaction/:uid/upstream/continue', async (ctx) => {
    const details = await load(ctx);
    const resumed = await resumeUpstreamReturn(deps, details.uid, facts(ctx, details), ctx.state.locale);
    if (resumed.next === 'start_again') return seeOther(ctx, '');
    if (resumed.next === 'refused') return failure(ctx, undefined, resumed.reason, details.uid);
    return signedIn(ctx, details, await finishSignIn(flows.signIn, signInRequest(ctx, details), resumed.account, resumed.proof));
  });

  // ---- 4. Link offer: an account already has this email; prove it is yours to link (src/flows/link.ts) ----
  const linkBinding = (details: Interaction): CodeBinding => ({ kind: 'link', interactionUid: details.uid });
  /** A code or passkey proof: link when it proves the account the link offer is for, then sign in. */
  const linkWith = async (ctx: Context, details: Interaction, proof: Proof) => {
    const linked = await proveAndLink(deps, details.uid, proof, facts(ctx, details), ctx.state.locale);
    if (!linked.ok) {
      if (linked.reason === 'no_offer') return seeOther(ctx, '');
      if (linked.reason === 'not_a_proof_of_an_account') return seeOther(ctx, '/link');
      return failure(ctx, undefined, linked.reason, details.uid);
    }
    return signedIn(ctx, details, await finishSignIn(flows.signIn, signInRequest(ctx, details), linked.account, linked.proof));
  };

  router.get('/interaction/:uid/link', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    const offer = await linkOfferOptions(
      { ...deps, passkeyCount: async (id) => (await passkeyStore.listForAccount(id)).length },
      details.uid, { sms: Boolean(codes.sms), providers: upstream.enabledProviders() },
    );
    if (!offer) return seeOther(ctx, '');
    const { options } = offer;
    page(ctx, services, 'link', {
      uid: details.uid, clientName: await clientName(details), providerName: PROVIDER_NAMES[offer.identity.provider],
      email: offer.identity.email ?? '', options,
      upstreamNames: Object.fromEntries(options.upstream.map((u) => [u.provider, PROVIDER_NAMES[u.provider]])),
    });
  });

  router.post('/interaction/:uid/link/decline', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    await declineLink(deps, details.uid);
    seeOther(ctx, '');
  });

  /** A refused send on the link offer: the error page, with the one status and Retry-After of every code step. */
  const linkSendRefused = (ctx: Context, details: Interaction, started: CodeSendRefusal) => {
    const { error } = refuseSend(ctx, started, 'link');
    page(ctx, services, 'upstream-error', {
      providerName: '', messageKey: error, retryHref: `/interaction/${encodeURIComponent(details.uid)}?choose=1`,
    });
  };

  router.post('/interaction/:uid/link/email', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    const offer = await linkOffer(deps, details.uid);
    const email = offer?.account.emails.find((e) => e.verifiedAt && e.key === parseForm(ctx, FORMS.linkEmail).key);
    if (!offer || !email) return seeOther(ctx, '/link');
    const started = await codes.email.send(linkBinding(details), email.address, request(ctx), offer.account.id);
    countSend(metrics, codes.email, started);
    if (!started.ok) return linkSendRefused(ctx, details, started);
    seeOther(ctx, '/link/code');
  });

  // The code page keeps the linking context: "Confirm it's you to link Apple", not just "Check your email".
  const linkCodeTitle = async (details: Interaction) => {
    const offer = await linkOffer(deps, details.uid);
    return offer ? { titleKey: 'link.code_title', titleParams: { provider: PROVIDER_NAMES[offer.identity.provider] } } : {};
  };
  const renderLinkCode = async (ctx: Context, details: Interaction, state: PageState = {}) => {
    const address = await codes.email.pendingTarget(linkBinding(details));
    if (!address) return seeOther(ctx, '/link');
    const uid = details.uid;
    page(ctx, services, 'code', codePage({
      channel: 'email', uid, target: address, maskAddress: true, action: `/interaction/${uid}/link/code`,
      resend: { action: `/interaction/${uid}/link/email`, field: 'key', value: parseEmailAddress(address)?.key ?? '' },
      back: { href: `/interaction/${uid}/link`, key: 'link.other_way' }, ...await linkCodeTitle(details),
    }, state));
  };
  router.get('/interaction/:uid/link/code', ...inInteraction, async (ctx) => renderLinkCode(ctx, await load(ctx)));
  router.post('/interaction/:uid/link/code', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    const verified = await codes.email.verify(linkBinding(details), parseForm(ctx, FORMS.code).code);
    if (!verified.ok) return codeFailed(ctx, details, verified, renderLinkCode);
    return linkWith(ctx, details, verified.proof);
  });

  const codeFailed = async (
    ctx: Context, details: Interaction, verified: CodeVerifyRefusal,
    render: (ctx: Context, details: Interaction, state: PageState) => Promise<void>,
  ) => {
    if (verified.reason === 'no_code') return seeOther(ctx, '/link');
    return render(ctx, details, refuseCode(ctx, verified));
  };

  router.post('/interaction/:uid/link/sms', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    const offer = await linkOffer(deps, details.uid);
    const phone = offer?.account.phones.find((p) => p.verifiedAt && p.phone === parseForm(ctx, FORMS.phone).phone);
    if (!offer || !phone || !codes.sms) return seeOther(ctx, '/link');
    const started = await codes.sms.send(linkBinding(details), phone.phone, request(ctx), offer.account.id);
    countSend(metrics, codes.sms, started);
    if (!started.ok) return linkSendRefused(ctx, details, started);
    seeOther(ctx, '/link/sms-code');
  });

  const renderLinkSmsCode = async (ctx: Context, details: Interaction, state: PageState = {}) => {
    const phone = codes.sms ? await codes.sms.pendingTarget(linkBinding(details)) : undefined;
    if (!phone) return seeOther(ctx, '/link');
    const uid = details.uid;
    page(ctx, services, 'code', codePage({
      channel: 'sms', uid, target: phone, leadKey: 'link.sms_lead', ...await linkCodeTitle(details),
      action: `/interaction/${uid}/link/sms-code`, resend: { action: `/interaction/${uid}/link/sms`, field: 'phone', value: phone },
      back: { href: `/interaction/${uid}/link`, key: 'link.other_way' },
    }, state));
  };
  router.get('/interaction/:uid/link/sms-code', ...inInteraction, async (ctx) => renderLinkSmsCode(ctx, await load(ctx)));
  router.post('/interaction/:uid/link/sms-code', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    if (!codes.sms) {
      ctx.status = 400;
      return renderLinkSmsCode(ctx, details, { error: 'code.error.format' });
    }
    const verified = await codes.sms.verify(linkBinding(details), parseForm(ctx, FORMS.code).code);
    if (!verified.ok) return codeFailed(ctx, details, verified, renderLinkSmsCode);
    return linkWith(ctx, details, verified.proof);
  });

  // Proof through the account's other upstream identity, with login_hint so the right account is picked.
  router.post('/interaction/:uid/link/upstream/:provider', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    const provider = providerOf(ctx);
    if (!provider) return seeOther(ctx, '/link');
    const start = await startLinkProof(deps, details.uid, provider);
    if (!start.ok) return start.reason === 'no_such_way' ? seeOther(ctx, '/link') : failure(ctx, provider, start.reason, details.uid);
    if (await refuseUpstreamInAppBrowser(ctx, services, details, provider)) return;
    return redirectToProvider(ctx, provider, details.uid, {
      purpose: 'link_proof', expectedAccountId: start.expectedAccountId, expectedSubject: start.expectedSubject, loginHint: start.loginHint,
    });
  });

  // ---- 5. Signup confirmation for an upstream identity nobody has (src/flows/upstream-signup.ts) ----
  router.get('/interaction/:uid/upstream-signup', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    const offer = await upstreamSignupOffer(deps, details.uid);
    if (!offer) return seeOther(ctx, '');
    const { identity, email } = offer;
    page(ctx, services, 'upstream-signup', {
      uid: details.uid, clientName: await clientName(details), providerName: PROVIDER_NAMES[identity.provider],
      name: identity.name ?? '', email: email?.address ?? '',
      emailNote: offer.withoutEmail ? `upstream.signup.${offer.withoutEmail}` : '',
      emailAsked: !email && (await clientRequiresEmail(details)),
    });
  });

  router.post('/interaction/:uid/upstream-signup', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    const outcome = await signUpWithUpstream(deps, details.uid, facts(ctx, details), ctx.state.locale);
    if (!outcome.ok) {
      if (outcome.reason === 'no_pending_signup') return seeOther(ctx, '');
      return failure(ctx, undefined, outcome.reason, details.uid);
    }
    metrics.signups.inc();
    return signedIn(ctx, details, await finishSignIn(flows.signIn, signInRequest(ctx, details), outcome.account, outcome.proof, { newAccount: true }));
  });

  router.post('/interaction/:uid/upstream-signup/cancel', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    await cancelUpstreamSignup(deps, details.uid);
    seeOther(ctx, '');
  });

  // ---- 6. The client requires an email and the account has none: ask for one, verify it by code (src/flows/require-email.ts) ----
  const requireEmailBinding = (details: Interaction): CodeBinding => ({ kind: 'require_email', interactionUid: details.uid });

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
    if (!(await heldSignIn(flows.signIn, details.uid))) return seeOther(ctx, '');
    page(ctx, services, 'require-email', { uid: details.uid, clientName: await clientName(details), email: '' });
  });

  router.post('/interaction/:uid/require-email', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    if (!(await heldSignIn(flows.signIn, details.uid))) return seeOther(ctx, '');
    const raw = parseForm(ctx, FORMS.email).email;
    const typed = checkEmailAddress(raw);
    const again = async (error: string, extra: PageState = {}) => {
      page(ctx, services, 'require-email', { uid: details.uid, clientName: await clientName(details), email: raw ?? '', error, ...extra });
    };
    if (!typed.ok) {
      ctx.status = 400;
      return again(emailProblemMessage(typed.problem));
    }
    const { email } = typed;
    const asked = await askRequiredEmail(flows.signIn, details.uid, email);
    if (!asked.ok) return asked.reason === 'taken' ? renderAddressTaken(ctx, details, email.address) : seeOther(ctx, '');
    const started = await codes.email.send(requireEmailBinding(details), email.address, request(ctx), asked.accountId);
    countSend(metrics, codes.email, started);
    if (!started.ok) {
      const refused = refuseSend(ctx, started, 'login');
      return again(refused.error, refused);
    }
    seeOther(ctx, '/require-email/code');
  });

  const renderRequireEmailCode = async (ctx: Context, details: Interaction, state: PageState = {}) => {
    const address = await codes.email.pendingTarget(requireEmailBinding(details));
    if (!address) return seeOther(ctx, '/require-email');
    const uid = details.uid;
    page(ctx, services, 'code', codePage({
      channel: 'email', uid, target: address, action: `/interaction/${uid}/require-email/code`,
      resend: { action: `/interaction/${uid}/require-email`, field: 'email', value: address }, back: { href: `/interaction/${uid}/require-email` },
    }, state));
  };
  router.get('/interaction/:uid/require-email/code', ...inInteraction, async (ctx) => renderRequireEmailCode(ctx, await load(ctx)));
  router.post('/interaction/:uid/require-email/code', ...inInteraction, async (ctx) => {
    const details = await load(ctx);
    const verified = await codes.email.verify(requireEmailBinding(details), parseForm(ctx, FORMS.code).code);
    if (!verified.ok) {
      if (verified.reason === 'no_code') return seeOther(ctx, '/require-email');
      return renderRequireEmailCode(ctx, details, refuseCode(ctx, verified));
    }
    const outcome = await completeRequiredEmail(flows.signIn, details.uid, verified.proof, facts(ctx, details));
    if (!outcome.ok) {
      if (outcome.reason === 'taken') return renderAddressTaken(ctx, details, outcome.address);
      return seeOther(ctx, outcome.reason === 'not_an_email' ? '/require-email' : '');
    }
    return signedIn(ctx, details, await finishSignIn(flows.signIn, signInRequest(ctx, details), outcome.account, outcome.proof));
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
  'upstream_paused', 'upstream_disabled', SIGN_IN_ONLY_UNLINKED,
] as const;
type UpstreamMessage = (typeof UPSTREAM_MESSAGES)[number];
