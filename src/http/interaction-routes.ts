import Router from '@koa/router';
import type { Context } from 'koa';
import { errors } from 'oidc-provider';
import { checkEmailAddress, emailProblemMessage, parseEmailAddress } from '../accounts/email-address.js';
import { maskedPhone, maskPhone, parsePhoneNumber } from '../accounts/phone-number.js';
import type { CodeStart, CodeVerification } from '../methods/one-time-code-method.js';
import { completeSignIn, decideAfterEmailProof, decideAfterPhoneProof, emailCodeRecipient } from '../flows/login.js';
import { cancelSignup, confirmSignup } from '../flows/signup.js';
import { grantConsent, describeConsent, signedInAs } from '../flows/consent.js';
import { parseCode } from '../methods/one-time-code.js';
import type { Services } from '../services.js';
import { isUpstreamProviderName } from '../upstream/index.js';
import { requireCsrf } from './csrf.js';
import { interactionSession, StaleInteraction, type Interaction } from './interaction-session.js';
import { formBody, page, type PageState } from './page.js';
import { authorizationUrlOf, inAppBrowserGuidance } from './in-app-browser-guidance.js';
import { RETRY_AFTER_SECONDS } from '../failures/dependency.js';

/**
 * Tsunagi's screens inside an oidc-provider interaction: login by email code, signup confirmation,
 * consent. Routes stay thin: parse the form, call a method or flow, render or finish the interaction.
 */
export function interactionRoutes(services: Services): Router {
  const { host, emailOtp, smsOtp, accounts, proofs, metrics, db } = services;
  const router = new Router({ prefix: '/interaction/:uid' });
  router.use(formBody(), requireCsrf());

  const { load, finish, seeOther, clientName, facts, holdForRequiredEmail } = interactionSession(services);
  const renderLogin = async (ctx: Context, details: Interaction, state: PageState = {}) => {
    page(ctx, services, 'login', {
      uid: details.uid,
      clientName: await clientName(details),
      email: state.email ?? (await emailOtp.lastTarget(details.uid)) ?? (typeof details.params.login_hint === 'string' ? details.params.login_hint : ''),
      smsAvailable: Boolean(smsOtp),
      providers: services.upstream.enabledProviders(),
      // Google refuses LINE's and other in-app browsers: guidance instead of its button (in-app-browser-guidance.ts).
      inAppBrowser: await inAppBrowserGuidance(ctx, services, details),
      // After a POST (an invalid address, a rate limit) the language links reload the login step.
      languageReturnTo: ctx.method === 'POST' ? `/interaction/${details.uid}` : undefined,
      ...state,
    });
  };

  router.get('/', async (ctx) => {
    const details = await load(ctx);
    const hint = details.params.idp_hint;
    // A relying party's idp_hint goes straight to that provider, once: coming back here after a
    // failure (?choose=1) shows every way to sign in instead of looping.
    if (details.prompt.name === 'login' && ctx.query.choose === undefined && isUpstreamProviderName(hint) && services.upstream.isEnabled(hint)) {
      return seeOther(ctx, `/upstream/${hint}/hinted`);
    }
    if (details.prompt.name === 'login') return renderLogin(ctx, details);
    if (details.prompt.name === 'consent') {
      const account = details.session?.accountId ? await accounts.findAccountById(details.session.accountId) : undefined;
      return page(ctx, services, 'consent', {
        uid: details.uid, clientName: await clientName(details), ...describeConsent(details),
        signedInAs: account ? signedInAs(account, services.config.defaultPhoneRegion) : '',
        // "Not you?": the same authorization with a new sign-in (prompt=login), without hints of this account.
        switchAccountHref: authorizationUrlOf(services.config.issuer, details, {
          prompt: String(details.params.prompt ?? '').split(' ').includes('consent') ? 'login consent' : 'login',
          login_hint: undefined, id_token_hint: undefined, idp_hint: undefined, max_age: undefined,
        }),
      });
    }
    throw new errors.InvalidRequest(`unsupported prompt ${details.prompt.name}`);
  });

  router.post('/email', async (ctx) => {
    const details = await load(ctx);
    const body = ctx.request.body as Record<string, unknown>;
    const typed = checkEmailAddress(body.email);
    if (!typed.ok) {
      ctx.status = 400;
      return renderLogin(ctx, details, { email: typeof body.email === 'string' ? body.email : '', error: emailProblemMessage(typed.problem) });
    }
    const email = typed.email;
    const recipient = await emailCodeRecipient({ accounts }, email);
    const started = await emailOtp.start({ interactionUid: details.uid, email: recipient, ip: ctx.ip, locale: ctx.state.locale });
    metrics.otpSends.inc({ channel: 'email', result: started.ok ? 'sent' : started.reason });
    if (!started.ok) {
      ctx.status = started.reason === 'rate_limited' ? 429 : 503;
      ctx.set('Retry-After', String(started.reason === 'rate_limited' ? started.retryAfterSeconds : RETRY_AFTER_SECONDS));
      return renderLogin(ctx, details, {
        email: email.address,
        error: started.reason === 'rate_limited' ? 'login.error.rate_limited' : 'login.error.delivery_failed',
        retryAfterMinutes: started.reason === 'rate_limited' ? Math.ceil(started.retryAfterSeconds / 60) : undefined,
      });
    }
    seeOther(ctx, '/code');
  });

  const emailCodePage = (uid: string, target: string, state: PageState = {}) => ({
    uid, target, action: `/interaction/${uid}/code`, resendAction: `/interaction/${uid}/code/resend`, languageReturnTo: `/interaction/${uid}/code`,
    backHref: `/interaction/${uid}`, ...state,
  });
  const renderCode = async (ctx: Context, details: Interaction, state: PageState = {}) => {
    const latest = await emailOtp.latestTarget(details.uid);
    if (!latest) return seeOther(ctx, '');
    const resent = state.codeSent === true ? { resendInSeconds: latest.resendInSeconds } : {};
    page(ctx, services, 'code', emailCodePage(details.uid, latest.target, latest.expired ? { ...codeError({ ok: false, reason: 'expired' }), ...state } : { ...state, ...resent }));
  };

  router.get('/code', async (ctx) => renderCode(ctx, await load(ctx), ctx.query.sent === '1' ? { codeSent: true } : {}));

  router.post('/code', async (ctx) => {
    const details = await load(ctx);
    const code = parseCode((ctx.request.body as Record<string, unknown>).code);
    if (!code) {
      ctx.status = 400;
      return renderCode(ctx, details, { error: 'code.error.format' });
    }
    const verified = await emailOtp.verify({ interactionUid: details.uid, code });
    if (!verified.ok) {
      if (verified.reason === 'no_code') return seeOther(ctx, '');
      ctx.status = 400;
      return renderCode(ctx, details, codeError(verified));
    }
    const decision = await decideAfterEmailProof({ accounts, proofs }, verified.proof);
    if (decision.next === 'confirm_signup') return seeOther(ctx, '/signup');
    metrics.signIns.inc({ method: 'email_otp' });
    await finish(ctx, await completeSignIn({ accounts }, decision.account, decision.proof, facts(ctx, details)));
  });

  // A new code goes to the address of this interaction's last code (server-side state), so an
  // expired or used-up code never sends the person back to type the address again.
  router.post('/code/resend', async (ctx) => {
    const details = await load(ctx);
    const latest = await emailOtp.latestTarget(details.uid);
    const email = latest ? parseEmailAddress(latest.target) : undefined;
    if (!email) return seeOther(ctx, '');
    const started = await emailOtp.start({ interactionUid: details.uid, email, ip: ctx.ip, locale: ctx.state.locale });
    metrics.otpSends.inc({ channel: 'email', result: started.ok ? 'sent' : started.reason });
    if (!started.ok) {
      ctx.status = started.reason === 'rate_limited' ? 429 : 503;
      ctx.set('Retry-After', String(started.reason === 'rate_limited' ? started.retryAfterSeconds : RETRY_AFTER_SECONDS));
      return page(ctx, services, 'code', emailCodePage(details.uid, email.address, sendRefused(started, 'login')));
    }
    seeOther(ctx, '/code?sent=1');
  });

  // Sign-in by SMS code to a verified phone number.
  const phonePage = (uid: string, state: PageState = {}) => ({ action: `/interaction/${uid}/phone`, backHref: `/interaction/${uid}`, ...state });
  const smsCodePage = (uid: string, target: string, state: PageState = {}) => ({
    uid, target: maskPhone(target), maskedTarget: maskedPhone(target), titleKey: 'code.sms.title', leadKey: 'code.sms.lead', action: `/interaction/${uid}/sms-code`,
    resendAction: `/interaction/${uid}/sms-code/resend`, languageReturnTo: `/interaction/${uid}/sms-code`, backHref: `/interaction/${uid}/phone`, backKey: 'code.other_phone', ...state,
  });
  // Unknown numbers get the same answer and the same limits, but no SMS: the page must not reveal
  // which numbers have accounts, and nobody should be able to make Tsunagi text arbitrary numbers.
  // Both take the same awaited steps and neither waits for Twilio (timing must not tell either).
  const sendSmsCode = async (ctx: Context, details: Interaction, sms: NonNullable<typeof smsOtp>, phone: string) => {
    const account = await accounts.findAccountByVerifiedPhone(phone);
    const started = await sms.startUndisclosed(
      { binding: details.uid, target: phone, ip: ctx.ip, locale: ctx.state.locale, accountId: account?.id ?? null },
      (outcome) => {
        metrics.otpSends.inc({ channel: 'sms', result: outcome === 'sent' ? 'sent' : 'delivery_failed' });
        if (outcome !== 'sent') services.log.warn({ problem: outcome }, 'sign-in SMS not delivered');
      },
    );
    if (!started.ok || !account) metrics.otpSends.inc({ channel: 'sms', result: started.ok ? 'unknown_number' : started.reason });
    if (!started.ok) {
      ctx.status = started.reason === 'rate_limited' ? 429 : 503;
      ctx.set('Retry-After', String(started.reason === 'rate_limited' ? started.retryAfterSeconds : RETRY_AFTER_SECONDS));
    }
    return started;
  };

  router.get('/phone', async (ctx) => {
    const details = await load(ctx);
    if (!smsOtp) return seeOther(ctx, '');
    page(ctx, services, 'phone', phonePage(details.uid));
  });

  router.post('/phone', async (ctx) => {
    const details = await load(ctx);
    if (!smsOtp) return seeOther(ctx, '');
    const raw = (ctx.request.body as Record<string, unknown>).phone;
    const phone = parsePhoneNumber(raw, services.config.defaultPhoneRegion);
    if (!phone) {
      ctx.status = 400;
      return page(ctx, services, 'phone', phonePage(details.uid, { phone: typeof raw === 'string' ? raw : '', error: 'phone.error.invalid' }));
    }
    const started = await sendSmsCode(ctx, details, smsOtp, phone);
    if (!started.ok) return page(ctx, services, 'phone', phonePage(details.uid, { phone: typeof raw === 'string' ? raw : '', ...sendRefused(started, 'phone') }));
    seeOther(ctx, '/sms-code');
  });

  const renderSmsCode = async (ctx: Context, details: Interaction, state: PageState = {}) => {
    const latest = smsOtp ? await smsOtp.latestTarget(details.uid) : undefined;
    if (!latest) return seeOther(ctx, '/phone');
    const resent = state.codeSent === true ? { resendInSeconds: latest.resendInSeconds } : {};
    page(ctx, services, 'code', smsCodePage(details.uid, latest.target, latest.expired ? { ...codeError({ ok: false, reason: 'expired' }), ...state } : { ...state, ...resent }));
  };

  router.get('/sms-code', async (ctx) => renderSmsCode(ctx, await load(ctx), ctx.query.sent === '1' ? { codeSent: true } : {}));

  router.post('/sms-code', async (ctx) => {
    const details = await load(ctx);
    if (!smsOtp || !(await smsOtp.latestTarget(details.uid))) return seeOther(ctx, '/phone');
    const code = parseCode((ctx.request.body as Record<string, unknown>).code);
    if (!code) {
      ctx.status = 400;
      return renderSmsCode(ctx, details, { error: 'code.error.format' });
    }
    const verified = await smsOtp.verify({ interactionUid: details.uid, code });
    if (!verified.ok) {
      if (verified.reason === 'no_code') return seeOther(ctx, '/phone');
      ctx.status = 400;
      return renderSmsCode(ctx, details, codeError(verified));
    }
    const account = await decideAfterPhoneProof({ accounts }, verified.proof);
    if (!account) {
      ctx.status = 400;
      return renderSmsCode(ctx, details, { error: 'code.error.wrong_code', attemptsLeft: 0 });
    }
    if (await holdForRequiredEmail(details, account, verified.proof)) return seeOther(ctx, '/require-email');
    metrics.signIns.inc({ method: 'sms_otp' });
    await finish(ctx, await completeSignIn({ accounts }, account, verified.proof, facts(ctx, details)));
  });

  // As for email: the number comes from this interaction's last SMS challenge, never from the form.
  router.post('/sms-code/resend', async (ctx) => {
    const details = await load(ctx);
    const latest = smsOtp ? await smsOtp.latestTarget(details.uid) : undefined;
    if (!smsOtp || !latest) return seeOther(ctx, '/phone');
    const started = await sendSmsCode(ctx, details, smsOtp, latest.target);
    if (!started.ok) return page(ctx, services, 'code', smsCodePage(details.uid, latest.target, sendRefused(started, 'phone')));
    seeOther(ctx, '/sms-code?sent=1');
  });

  router.get('/signup', async (ctx) => {
    const details = await load(ctx);
    const parked = await proofs.peek(details.uid, 'signup', new Date());
    if (!parked || parked.proof.subject.kind !== 'email') return seeOther(ctx, '');
    page(ctx, services, 'signup', { uid: details.uid, email: parked.proof.subject.address, clientName: await clientName(details) });
  });

  router.post('/signup', async (ctx) => {
    const details = await load(ctx);
    const outcome = await confirmSignup({ pool: db.pool, accounts, proofs }, details.uid, facts(ctx, details));
    if (!outcome.ok) {
      ctx.status = 400;
      return renderLogin(ctx, details, { error: 'signup.error.expired' });
    }
    if (outcome.created) metrics.signups.inc();
    metrics.signIns.inc({ method: outcome.proof.method });
    const signedIn = await completeSignIn({ accounts }, outcome.account, outcome.proof, facts(ctx, details));
    if (!outcome.created) return finish(ctx, signedIn);
    // A new account: the sign-in is stored in the interaction now (so nothing is lost if the person
    // walks away), and before going back to the application Tsunagi offers to add a passkey.
    await host.current.interactionResult(ctx.req, ctx.res, { ...signedIn, ...passkeyOfferMarker }, { mergeWithLastSubmission: false });
    seeOther(ctx, '/passkey-offer');
  });

  router.get('/passkey-offer', async (ctx) => {
    const details = await load(ctx);
    const accountId = passkeyOfferAccountId(details);
    if (!accountId) return seeOther(ctx, '');
    page(ctx, services, 'passkey-offer', { uid: details.uid, clientName: await clientName(details), continueUrl: details.returnTo });
  });

  router.post('/signup/cancel', async (ctx) => {
    const details = await load(ctx);
    await cancelSignup({ proofs }, details.uid);
    seeOther(ctx, '');
  });

  router.post('/consent', async (ctx) => {
    const details = await load(ctx);
    if (details.prompt.name !== 'consent') throw new StaleInteraction();
    const grantId = await grantConsent(host.current, details);
    await accounts.recordAuditEvent({
      type: 'consent_granted', accountId: details.session?.accountId, clientId: details.params.client_id as string,
      ip: ctx.ip, userAgent: ctx.get('user-agent'), data: { scope: details.params.scope },
    });
    await finish(ctx, { consent: { grantId } }, true);
  });

  router.post('/abort', async (ctx) => {
    await load(ctx);
    await finish(ctx, { error: 'access_denied', error_description: 'the person cancelled the sign-in' });
  });

  return router;
}

/**
 * Marks an interaction result whose sign-in created the account just now: only then do the passkey
 * offer page and its registration ceremony (src/http/passkey-routes.ts) act for that account.
 */
export const passkeyOfferMarker = { tsunagi: { passkeyOffer: true } } as const;

/** The account a finished signup in this interaction may add a passkey to, if any. */
export function passkeyOfferAccountId(details: { result?: unknown }): string | undefined {
  const result = details.result as { login?: { accountId?: unknown }; tsunagi?: { passkeyOffer?: unknown } } | undefined;
  if (result?.tsunagi?.passkeyOffer !== true || typeof result.login?.accountId !== 'string') return undefined;
  return result.login.accountId;
}

/**
 * The code page's message for a failed verification. A code that can no longer be used makes
 * "Send a new code" the page's primary action (codeSpent).
 */
export function codeError(v: Exclude<CodeVerification, { ok: true }>): PageState {
  return {
    error: `code.error.${v.reason}`,
    attemptsLeft: v.reason === 'wrong_code' ? v.attemptsLeft : undefined,
    canRetry: v.reason === 'wrong_code',
    codeSpent: v.reason !== 'wrong_code',
  };
}

/** The message for a send that was refused (rate limit or delivery), with its wait in minutes. */
export function sendRefused(started: Exclude<CodeStart, { ok: true }>, screen: 'login' | 'phone'): PageState {
  if (started.reason === 'rate_limited') return { error: `${screen}.error.rate_limited`, retryAfterMinutes: Math.ceil(started.retryAfterSeconds / 60) };
  return { error: screen === 'login' ? 'login.error.delivery_failed' : `phone.error.${started.problem}` };
}
