import Router from '@koa/router';
import type { Context } from 'koa';
import { errors } from 'oidc-provider';
import { checkEmailAddress, emailProblemMessage, parseEmailAddress } from '../accounts/email-address.js';
import { parsePhoneNumber } from '../accounts/phone-number.js';
import { finishSignIn } from '../flows/sign-in.js';
import { decideAfterEmailProof, decideAfterPhoneProof, emailCodeRecipient } from '../flows/login.js';
import { cancelSignup, confirmSignup, pendingSignup } from '../flows/signup.js';
import { grantConsent, describeConsent, signedInAs } from '../flows/consent.js';
import type { CodeBinding, CodeStep } from '../flows/code-step.js';
import { codeError, codePage, countSend, refuseCode, refuseSend } from './code-step.js';
import type { Services } from '../services.js';
import { isUpstreamProviderName } from '../upstream/index.js';
import { requireCsrf } from './csrf.js';
import { interactionSession, passkeyOfferAccountId, StaleInteraction, type Interaction } from './interaction-session.js';
import { FORMS, parseForm } from './forms.js';
import { formBody, page, type PageState } from './page.js';
import { authorizationUrlOf, inAppBrowserGuidance } from './in-app-browser-guidance.js';

/**
 * Tsunagi's screens inside an oidc-provider interaction: login by email code, signup confirmation,
 * consent. Routes stay thin: parse the form, call a method or flow, render or finish the interaction.
 */
export function interactionRoutes(services: Services): Router {
  const { host, codes, accounts, proofs, metrics, db, flows } = services;
  const login = (details: Interaction): CodeBinding => ({ kind: 'login', interactionUid: details.uid });
  const request = (ctx: Context) => ({ ip: ctx.ip, locale: ctx.state.locale });
  const router = new Router({ prefix: '/interaction/:uid' });
  router.use(formBody(), requireCsrf());

  const { load, finish, seeOther, clientName, facts, signInRequest, signedIn } = interactionSession(services);
  const renderLogin = async (ctx: Context, details: Interaction, state: PageState = {}) => {
    page(ctx, services, 'login', {
      uid: details.uid,
      clientName: await clientName(details),
      email: state.email ?? (await codes.email.lastTarget(login(details))) ?? (typeof details.params.login_hint === 'string' ? details.params.login_hint : ''),
      smsAvailable: Boolean(codes.sms),
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
    const form = parseForm(ctx, FORMS.email);
    const typed = checkEmailAddress(form.email);
    if (!typed.ok) {
      ctx.status = 400;
      return renderLogin(ctx, details, { email: form.email ?? '', error: emailProblemMessage(typed.problem) });
    }
    const email = typed.email;
    const recipient = await emailCodeRecipient({ accounts }, email);
    const started = await codes.email.send(login(details), recipient.address, request(ctx));
    countSend(metrics, codes.email, started);
    if (!started.ok) return renderLogin(ctx, details, { email: email.address, ...refuseSend(ctx, started, 'login') });
    seeOther(ctx, '/code');
  });

  const emailCodePage = (uid: string, target: string, state: PageState = {}) => codePage({
    channel: 'email', uid, target, action: `/interaction/${uid}/code`, resend: { action: `/interaction/${uid}/code/resend` }, languageReturnTo: `/interaction/${uid}/code`,
    back: { href: `/interaction/${uid}` },
  }, state);
  const renderCode = async (ctx: Context, details: Interaction, state: PageState = {}) => {
    const latest = await codes.email.latestTarget(login(details));
    if (!latest) return seeOther(ctx, '');
    const resent = state.codeSent === true ? { resendInSeconds: latest.resendInSeconds } : {};
    page(ctx, services, 'code', emailCodePage(details.uid, latest.target, latest.expired ? { ...codeError({ ok: false, reason: 'expired' }), ...state } : { ...state, ...resent }));
  };

  router.get('/code', async (ctx) => renderCode(ctx, await load(ctx), ctx.query.sent === '1' ? { codeSent: true } : {}));

  router.post('/code', async (ctx) => {
    const details = await load(ctx);
    const verified = await codes.email.verify(login(details), parseForm(ctx, FORMS.code).code);
    if (!verified.ok) {
      if (verified.reason === 'no_code') return seeOther(ctx, '');
      return renderCode(ctx, details, refuseCode(ctx, verified));
    }
    const decision = await decideAfterEmailProof({ accounts, proofs }, verified.proof);
    if (decision.next === 'confirm_signup') return seeOther(ctx, '/signup');
    return signedIn(ctx, details, await finishSignIn(flows.signIn, signInRequest(ctx, details), decision.account, decision.proof));
  });

  // A new code goes to the address of this interaction's last code (server-side state), so an
  // expired or used-up code never sends the person back to type the address again.
  router.post('/code/resend', async (ctx) => {
    const details = await load(ctx);
    const latest = await codes.email.latestTarget(login(details));
    const email = latest ? parseEmailAddress(latest.target) : undefined;
    if (!email) return seeOther(ctx, '');
    const started = await codes.email.send(login(details), email.address, request(ctx));
    countSend(metrics, codes.email, started);
    if (!started.ok) return page(ctx, services, 'code', emailCodePage(details.uid, email.address, refuseSend(ctx, started, 'login')));
    seeOther(ctx, '/code?sent=1');
  });

  // Sign-in by SMS code to a verified phone number.
  const phonePage = (uid: string, state: PageState = {}) => ({ action: `/interaction/${uid}/phone`, backHref: `/interaction/${uid}`, ...state });
  const smsCodePage = (uid: string, target: string, state: PageState = {}) => codePage({
    channel: 'sms', uid, target, action: `/interaction/${uid}/sms-code`, resend: { action: `/interaction/${uid}/sms-code/resend` },
    languageReturnTo: `/interaction/${uid}/sms-code`, back: { href: `/interaction/${uid}/phone`, key: 'code.other_phone' },
  }, state);
  // Unknown numbers get the same answer and the same limits, but no SMS: the page must not reveal
  // which numbers have accounts, and nobody should be able to make Tsunagi text arbitrary numbers.
  // Both take the same awaited steps and neither waits for Twilio (timing must not tell either).
  const sendSmsCode = async (ctx: Context, details: Interaction, sms: CodeStep, phone: string) => {
    const account = await accounts.findAccountByVerifiedPhone(phone);
    const started = await sms.sendUndisclosed(login(details), phone, request(ctx), account?.id ?? null, (outcome) => {
      metrics.otpSends.inc({ channel: 'sms', result: outcome === 'sent' ? 'sent' : 'delivery_failed' });
      if (outcome !== 'sent') services.log.warn({ problem: outcome }, 'sign-in SMS not delivered');
    });
    if (!started.ok || !account) metrics.otpSends.inc({ channel: 'sms', result: started.ok ? 'unknown_number' : started.reason });
    return started;
  };

  router.get('/phone', async (ctx) => {
    const details = await load(ctx);
    if (!codes.sms) return seeOther(ctx, '');
    page(ctx, services, 'phone', phonePage(details.uid));
  });

  router.post('/phone', async (ctx) => {
    const details = await load(ctx);
    if (!codes.sms) return seeOther(ctx, '');
    const raw = parseForm(ctx, FORMS.phone).phone;
    const phone = parsePhoneNumber(raw, services.config.defaultPhoneRegion);
    if (!phone) {
      ctx.status = 400;
      return page(ctx, services, 'phone', phonePage(details.uid, { phone: raw ?? '', error: 'phone.error.invalid' }));
    }
    const started = await sendSmsCode(ctx, details, codes.sms, phone);
    if (!started.ok) return page(ctx, services, 'phone', phonePage(details.uid, { phone: raw ?? '', ...refuseSend(ctx, started, 'phone') }));
    seeOther(ctx, '/sms-code');
  });

  const renderSmsCode = async (ctx: Context, details: Interaction, state: PageState = {}) => {
    const latest = codes.sms ? await codes.sms.latestTarget(login(details)) : undefined;
    if (!latest) return seeOther(ctx, '/phone');
    const resent = state.codeSent === true ? { resendInSeconds: latest.resendInSeconds } : {};
    page(ctx, services, 'code', smsCodePage(details.uid, latest.target, latest.expired ? { ...codeError({ ok: false, reason: 'expired' }), ...state } : { ...state, ...resent }));
  };

  router.get('/sms-code', async (ctx) => renderSmsCode(ctx, await load(ctx), ctx.query.sent === '1' ? { codeSent: true } : {}));

  router.post('/sms-code', async (ctx) => {
    const details = await load(ctx);
    if (!codes.sms || !(await codes.sms.latestTarget(login(details)))) return seeOther(ctx, '/phone');
    const verified = await codes.sms.verify(login(details), parseForm(ctx, FORMS.code).code);
    if (!verified.ok) {
      if (verified.reason === 'no_code') return seeOther(ctx, '/phone');
      return renderSmsCode(ctx, details, refuseCode(ctx, verified));
    }
    const account = await decideAfterPhoneProof({ accounts }, verified.proof);
    if (!account) {
      ctx.status = 400;
      return renderSmsCode(ctx, details, { error: 'code.error.wrong_code', attemptsLeft: 0 });
    }
    return signedIn(ctx, details, await finishSignIn(flows.signIn, signInRequest(ctx, details), account, verified.proof));
  });

  // As for email: the number comes from this interaction's last SMS challenge, never from the form.
  router.post('/sms-code/resend', async (ctx) => {
    const details = await load(ctx);
    const latest = codes.sms ? await codes.sms.latestTarget(login(details)) : undefined;
    if (!codes.sms || !latest) return seeOther(ctx, '/phone');
    const started = await sendSmsCode(ctx, details, codes.sms, latest.target);
    if (!started.ok) return page(ctx, services, 'code', smsCodePage(details.uid, latest.target, refuseSend(ctx, started, 'phone')));
    seeOther(ctx, '/sms-code?sent=1');
  });

  router.get('/signup', async (ctx) => {
    const details = await load(ctx);
    const email = await pendingSignup({ proofs }, details.uid);
    if (!email) return seeOther(ctx, '');
    page(ctx, services, 'signup', { uid: details.uid, email, clientName: await clientName(details) });
  });

  router.post('/signup', async (ctx) => {
    const details = await load(ctx);
    const outcome = await confirmSignup({ pool: db.pool, accounts, proofs }, details.uid, facts(ctx, details));
    if (!outcome.ok) {
      ctx.status = 400;
      return renderLogin(ctx, details, { error: 'signup.error.expired' });
    }
    if (outcome.created) metrics.signups.inc();
    return signedIn(ctx, details, await finishSignIn(flows.signIn, signInRequest(ctx, details), outcome.account, outcome.proof, { newAccount: outcome.created }));
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

export { passkeyOfferAccountId, passkeyOfferMarker } from './interaction-session.js';
