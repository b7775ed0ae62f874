import { createHash } from 'node:crypto';
import Router from '@koa/router';
import type { Context } from 'koa';
import type { Account } from '../accounts/account-store.js';
import { checkEmailAddress, emailProblemMessage } from '../accounts/email-address.js';
import { formatPhoneNumber, parsePhoneNumber } from '../accounts/phone-number.js';
import { describeGrantedScopes, formatDate, formatDateTime } from '../i18n/format.js';
import { isAuditEventType } from '../accounts/account-store.js';
import type { SettingsChange } from '../flows/account-settings.js';
import { revokeGrantOfAccount } from '../flows/grants.js';
import { completeAccountPageLink } from '../flows/link.js';
import { pausedSignIn } from '../flows/upstream.js';
import { isUpstreamProviderName, UpstreamError } from '../upstream/index.js';
import { PROVIDER_NAMES, upstreamRedirectUri } from './upstream-routes.js';
import type { RequestFacts } from '../flows/login.js';
import { bindingKey, type CodeBinding } from '../flows/code-step.js';
import { listGrantsOfAccount } from '../oidc/adapter/grant-lookup.js';
import type { Services } from '../services.js';
import {
  accountBinding, accountLoginUrl, readAccountSession, safeReturnTo, signedInRecently, takeAccountLoginState,
  type AccountSession,
} from './account-session.js';
import { requireCsrf } from './csrf.js';
import { codePage, countSend, refuseCode, refuseSend } from './code-step.js';
import { FORMS, parseForm } from './forms.js';
import { formBody, page, type PageState } from './page.js';
import { ACCOUNT_APP_CLIENT_ID } from '../oidc/account-app.js';
import { upstreamBrowserCookies } from './upstream-browser-cookies.js';

// Notices the overview may show after a change (anything else in ?notice= is ignored).
export const NOTICES = new Set([
  'email_added', 'email_removed', 'email_primary', 'phone_added', 'phone_removed', 'passkey_added', 'passkey_removed',
  'passkey_renamed', 'grant_revoked', 'last_method', 'not_found', 'already_registered', 'wrong_proof',
  'upstream_linked', 'upstream_unlinked', 'upstream_resumed', 'already_linked', 'provider_already_linked',
]);

interface Signed { session: AccountSession; account: Account }

/**
 * The message naming an audit event on the account page. Events are stored for years and outlive
 * the code that wrote them: a type this version has no text for (written by a newer version, or a
 * removed kind) gets a neutral label and a warning in the log, never a broken page.
 */
export function eventLabelKey(type: string, log: Pick<Services['log'], 'warn'>): string {
  // Every known type has its message (test/unit/message-keys.test.ts).
  if (isAuditEventType(type)) return `event.${type}`;
  log.warn({ type }, 'audit event type without a message; shown with a neutral label');
  return 'event.unknown';
}

/**
 * /account: the signed-in person's own page. Sign-in to it goes through Tsunagi's own authorization
 * endpoint as the built-in first-party client; adding or removing a sign-in method needs a sign-in
 * within the last 10 minutes (otherwise the person signs in again first).
 */
export function accountRoutes(services: Services): Router {
  const { host, accounts, config, codes, db, identities, upstream, flows } = services;
  const { settings } = flows;
  const passkeys = services.passkeyStore;
  const router = new Router({ prefix: '/account' });
  router.use(formBody(), requireCsrf());

  const facts = (ctx: Context): RequestFacts => ({ ip: ctx.ip, userAgent: ctx.get('user-agent') || undefined, clientId: ACCOUNT_APP_CLIENT_ID });
  const seeOther = (ctx: Context, path: string) => { ctx.redirect(path); ctx.status = 303; };
  const toLogin = (ctx: Context, reauth: boolean, returnTo = '/account') =>
    seeOther(ctx, `/account/login?${new URLSearchParams({ return: returnTo, ...(reauth ? { reauth: '1' } : {}) })}`);

  /** The signed-in account, or a redirect to sign in. With `recent`, also a redirect when the sign-in is too old. */
  const signedIn = async (ctx: Context, opts: { recent?: boolean; returnTo?: string } = {}): Promise<Signed | undefined> => {
    const session = await readAccountSession(host.current, ctx);
    const account = session ? await accounts.findAccountById(session.accountId) : undefined;
    if (!session || !account) {
      toLogin(ctx, false, opts.returnTo);
      return undefined;
    }
    if (opts.recent && !signedInRecently(session)) {
      toLogin(ctx, true, opts.returnTo);
      return undefined;
    }
    return { session, account };
  };
  const badRequest = (ctx: Context, view: string, data: Record<string, unknown>) => {
    ctx.status = 400;
    page(ctx, services, view, data);
  };
  const after = (ctx: Context, outcome: SettingsChange, done: string) =>
    seeOther(ctx, `/account?notice=${outcome.ok ? done : outcome.reason}`);

  router.get('/login', (ctx) => {
    ctx.redirect(accountLoginUrl(ctx, config.issuer, {
      returnTo: safeReturnTo(ctx.query.return), reauth: ctx.query.reauth === '1', locale: ctx.state.locale,
    }));
  });

  // The end of the account page's own sign-in: take the code (single use, PKCE-checked) and go back.
  router.get('/callback', async (ctx) => {
    const login = takeAccountLoginState(ctx);
    const { code, state, error } = ctx.query;
    if (typeof error === 'string') return seeOther(ctx, '/account/signed-out');
    if (!login || typeof code !== 'string' || state !== login.state) {
      ctx.status = 400;
      return page(ctx, services, 'error', { messageKey: 'error.stale_interaction', status: 400 });
    }
    const found = await host.current.AuthorizationCode.find(code);
    const challenge = createHash('sha256').update(login.verifier).digest('base64url');
    if (!found || found.clientId !== ACCOUNT_APP_CLIENT_ID || found.codeChallenge !== challenge || (found as unknown as { consumed?: number }).consumed) {
      ctx.status = 400;
      return page(ctx, services, 'error', { messageKey: 'error.stale_interaction', status: 400 });
    }
    await found.consume();
    seeOther(ctx, login.returnTo);
  });

  router.get('/signed-out', (ctx) => page(ctx, services, 'account-signed-out', {}));

  router.get('/', async (ctx) => {
    const me = await signedIn(ctx);
    if (!me) return;
    const { account, session } = me;
    const [keys, grants, events, methodCount, linked] = await Promise.all([
      passkeys.listForAccount(account.id),
      listGrantsOfAccount(db.pool, account.id),
      accounts.listAuditEvents({ accountId: account.id, limit: 15 }),
      accounts.countSignInMethods(account.id),
      identities.listForAccount(account.id),
    ]);
    const clientNames = new Map<string, string>();
    for (const g of grants) {
      if (g.clientId === ACCOUNT_APP_CLIENT_ID || clientNames.has(g.clientId)) continue;
      const client = await host.current.Client.find(g.clientId);
      clientNames.set(g.clientId, (client?.clientName as string | undefined) ?? g.clientId);
    }
    const notice = typeof ctx.query.notice === 'string' && NOTICES.has(ctx.query.notice) ? ctx.query.notice : undefined;
    const locale = ctx.state.locale;
    page(ctx, services, 'account', {
      emails: account.emails.filter((e) => e.verifiedAt).map((e) => ({ address: e.address, key: e.key, isPrimary: e.isPrimary })),
      phones: account.phones.filter((p) => p.verifiedAt).map((p) => ({ phone: p.phone, display: formatPhoneNumber(p.phone, config.defaultPhoneRegion) })),
      passkeys: keys,
      identities: linked.map((i) => ({
        id: i.id, providerName: PROVIDER_NAMES[i.provider], email: i.isPrivateEmail ? '' : i.email, linkedOn: formatDate(i.createdAt, locale), paused: pausedSignIn(i),
      })),
      linkable: upstream.enabledProviders().filter((p) => !linked.some((i) => i.provider === p)).map((p) => ({ id: p, name: PROVIDER_NAMES[p] })),
      grants: grants.filter((g) => g.clientId !== ACCOUNT_APP_CLIENT_ID).map((g) => ({ ...g, clientName: clientNames.get(g.clientId) ?? g.clientId, access: describeGrantedScopes(g.scope, locale) })),
      events: events.map((e) => ({ labelKey: eventLabelKey(e.type, services.log), at: formatDateTime(e.createdAt, locale), ip: e.ip ?? '' })),
      onlyOneMethod: methodCount <= 1,
      recent: signedInRecently(session),
      smsAvailable: Boolean(codes.addPhone),
      notice,
      noticeIsError: notice ? ['last_method', 'not_found', 'already_registered', 'wrong_proof', 'already_linked', 'provider_already_linked'].includes(notice) : false,
    });
  });

  // Linking Google or Apple from here: off to the provider, and back through /account/providers/continue,
  // where only this account-page session can pick the answer up (src/http/upstream-routes.ts parks it).
  router.post('/providers/:provider/link', async (ctx) => {
    const me = await signedIn(ctx, { recent: true });
    if (!me) return;
    const provider = ctx.params.provider;
    if (!isUpstreamProviderName(provider) || !upstream.isEnabled(provider)) return seeOther(ctx, '/account?notice=not_found');
    try {
      const { authorizationUrl } = await upstream.begin({
        provider, interactionUid: accountBinding(me.session), redirectUri: upstreamRedirectUri(config.issuer, provider),
        purpose: 'account_link', expectedAccountId: me.account.id, browser: upstreamBrowserCookies(ctx, { issuer: config.issuer, secureCookies: services.secureCookies }), prompt: provider === 'google' ? 'select_account' : undefined,
      });
      seeOther(ctx, authorizationUrl);
    } catch (err) {
      if (!(err instanceof UpstreamError)) throw err;
      ctx.status = 502;
      page(ctx, services, 'upstream-error', { providerName: PROVIDER_NAMES[provider], messageKey: `upstream.error.${err.reason === 'timeout' ? 'timeout' : 'unavailable'}` });
    }
  });

  router.get('/providers/continue', async (ctx) => {
    const me = await signedIn(ctx);
    if (!me) return;
    const outcome = await completeAccountPageLink(flows.upstream, accountBinding(me.session), me.account, facts(ctx), ctx.state.locale);
    seeOther(ctx, `/account?notice=${outcome.ok ? 'upstream_linked' : outcome.reason}`);
  });

  // Google reported the account hijacked and the person got it back: turn Google sign-in on again.
  router.post('/providers/:id/resume', async (ctx) => {
    const me = await signedIn(ctx, { recent: true });
    if (!me) return;
    after(ctx, await settings.resumeUpstream(me.account, ctx.params.id as string, facts(ctx), ctx.state.locale), 'upstream_resumed');
  });

  router.post('/providers/:id/unlink', async (ctx) => {
    const me = await signedIn(ctx, { recent: true });
    if (!me) return;
    const outcome = await settings.unlinkUpstream(me.account, ctx.params.id as string, facts(ctx), ctx.state.locale, async (provider, refreshToken) => {
      if (provider === 'apple' && upstream.isEnabled('apple')) await upstream.revokeAppleToken(refreshToken);
    });
    after(ctx, outcome, 'upstream_unlinked');
  });

  // Adding an email: a code to the new address, bound to this account-page session.
  const emailCodePage = (target: string, state: PageState = {}) => codePage({
    channel: 'email', target, action: '/account/emails/verify', resend: { action: '/account/emails', field: 'email', value: target },
    back: { href: '/account', key: 'account.back' }, titleKey: 'code.title',
  }, state);
  const binding = (me: Signed): CodeBinding => ({ kind: 'account', sessionUid: me.session.sessionUid });
  const request = (ctx: Context) => ({ ip: ctx.ip, locale: ctx.state.locale });

  router.post('/emails', async (ctx) => {
    const me = await signedIn(ctx, { recent: true });
    if (!me) return;
    const typedEmail = parseForm(ctx, FORMS.email).email;
    const typed = checkEmailAddress(typedEmail);
    if (!typed.ok) return badRequest(ctx, 'account-add', { kind: 'email', error: emailProblemMessage(typed.problem), value: typedEmail ?? '', languageReturnTo: '/account/emails/new' });
    const { email } = typed;
    const started = await codes.addEmail.send(binding(me), email.address, request(ctx), me.account.id);
    countSend(services.metrics, codes.addEmail, started);
    if (!started.ok) return page(ctx, services, 'account-add', { kind: 'email', value: email.address, languageReturnTo: '/account/emails/new', ...refuseSend(ctx, started, 'login') });
    seeOther(ctx, '/account/emails/verify');
  });

  router.get('/emails/new', async (ctx) => {
    if (await signedIn(ctx, { recent: true, returnTo: '/account/emails/new' })) page(ctx, services, 'account-add', { kind: 'email', value: '' });
  });

  router.get('/emails/verify', async (ctx) => {
    const me = await signedIn(ctx);
    if (!me) return;
    const target = await codes.addEmail.pendingTarget(binding(me));
    if (!target) return seeOther(ctx, '/account');
    page(ctx, services, 'code', emailCodePage(target));
  });

  router.post('/emails/verify', async (ctx) => {
    const me = await signedIn(ctx, { recent: true });
    if (!me) return;
    const target = await codes.addEmail.pendingTarget(binding(me));
    if (!target) return seeOther(ctx, '/account');
    const added = await codes.addEmail.verifyThen(binding(me), parseForm(ctx, FORMS.code).code,
      (proof) => settings.addEmail(me.account, bindingKey(binding(me)), proof, facts(ctx), ctx.state.locale));
    if (!added.ok) return page(ctx, services, 'code', emailCodePage(target, refuseCode(ctx, added)));
    after(ctx, added.value, 'email_added');
  });

  router.post('/emails/primary', async (ctx) => {
    const me = await signedIn(ctx, { recent: true });
    if (!me) return;
    after(ctx, await settings.makePrimaryEmail(me.account, parseForm(ctx, FORMS.emailKey).email_key ?? '', facts(ctx), ctx.state.locale), 'email_primary');
  });

  router.post('/emails/remove', async (ctx) => {
    const me = await signedIn(ctx, { recent: true });
    if (!me) return;
    after(ctx, await settings.removeEmail(me.account, parseForm(ctx, FORMS.emailKey).email_key ?? '', facts(ctx), ctx.state.locale), 'email_removed');
  });

  // Adding a phone: an SMS code to the new number, bound to this account-page session.
  const smsCodePage = (target: string, state: PageState = {}) => codePage({
    channel: 'sms', target, action: '/account/phones/verify', resend: { action: '/account/phones', field: 'phone', value: target },
    back: { href: '/account', key: 'account.back' },
  }, state);

  router.get('/phones/new', async (ctx) => {
    if (!codes.addPhone) return seeOther(ctx, '/account');
    if (await signedIn(ctx, { recent: true, returnTo: '/account/phones/new' })) {
      page(ctx, services, 'phone', { action: '/account/phones', backHref: '/account', backKey: 'account.back', titleKey: 'account.phone.title', leadKey: 'account.phone.lead' });
    }
  });

  router.post('/phones', async (ctx) => {
    const addPhone = codes.addPhone;
    if (!addPhone) return seeOther(ctx, '/account');
    const me = await signedIn(ctx, { recent: true });
    if (!me) return;
    const raw = parseForm(ctx, FORMS.phone).phone;
    const phone = parsePhoneNumber(raw, config.defaultPhoneRegion);
    const phonePage = (state: PageState) => ({ languageReturnTo: '/account/phones/new', action: '/account/phones', backHref: '/account', backKey: 'account.back', titleKey: 'account.phone.title', leadKey: 'account.phone.lead', phone: raw ?? '', ...state });
    if (!phone) return badRequest(ctx, 'phone', phonePage({ error: 'phone.error.invalid' }));
    const started = await addPhone.send(binding(me), phone, request(ctx), me.account.id);
    countSend(services.metrics, addPhone, started);
    if (!started.ok) return page(ctx, services, 'phone', phonePage(refuseSend(ctx, started, 'phone')));
    seeOther(ctx, '/account/phones/verify');
  });

  router.get('/phones/verify', async (ctx) => {
    const me = await signedIn(ctx);
    if (!me || !codes.addPhone) return;
    const target = await codes.addPhone.pendingTarget(binding(me));
    if (!target) return seeOther(ctx, '/account');
    page(ctx, services, 'code', smsCodePage(target));
  });

  router.post('/phones/verify', async (ctx) => {
    const addPhone = codes.addPhone;
    const me = await signedIn(ctx, { recent: true });
    if (!me || !addPhone) return;
    const target = await addPhone.pendingTarget(binding(me));
    if (!target) return seeOther(ctx, '/account');
    const added = await addPhone.verifyThen(binding(me), parseForm(ctx, FORMS.code).code,
      (proof) => settings.addPhone(me.account, bindingKey(binding(me)), proof, facts(ctx), ctx.state.locale));
    if (!added.ok) return page(ctx, services, 'code', smsCodePage(target, refuseCode(ctx, added)));
    after(ctx, added.value, 'phone_added');
  });

  router.post('/phones/remove', async (ctx) => {
    const me = await signedIn(ctx, { recent: true });
    if (!me) return;
    after(ctx, await settings.removePhone(me.account, parseForm(ctx, FORMS.phone).phone ?? '', facts(ctx), ctx.state.locale), 'phone_removed');
  });

  router.post('/passkeys/:id/rename', async (ctx) => {
    const me = await signedIn(ctx);
    if (!me) return;
    const name = (parseForm(ctx, FORMS.passkeyName).name ?? '').trim().slice(0, 64);
    const ok = name.length > 0 && (await passkeys.rename(me.account.id, ctx.params.id as string, name));
    seeOther(ctx, `/account?notice=${ok ? 'passkey_renamed' : 'not_found'}`);
  });

  router.post('/passkeys/:id/remove', async (ctx) => {
    const me = await signedIn(ctx, { recent: true });
    if (!me) return;
    after(ctx, await settings.removePasskey(me.account, ctx.params.id as string, facts(ctx), ctx.state.locale), 'passkey_removed');
  });

  // Revoking an application: the grant and every token issued under it stop working.
  router.post('/grants/:id/revoke', async (ctx) => {
    const me = await signedIn(ctx);
    if (!me) return;
    const revoked = await revokeGrantOfAccount(flows.grants, me.account, ctx.params.id as string, facts(ctx), ctx.state.locale);
    seeOther(ctx, `/account?notice=${revoked === 'revoked' ? 'grant_revoked' : 'not_found'}`);
  });

  return router;
}
