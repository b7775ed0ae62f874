import Router from '@koa/router';
import type { Context } from 'koa';
import { BackchannelApproval, parseApprovalLinkSecret, type ApprovalOutcome, type ApprovalStep } from '../flows/backchannel-approval.js';
import type { Services } from '../services.js';
import { accountLoginUrl, readAccountSession } from './account-session.js';
import { requireCsrf } from './csrf.js';
import { formBody, page } from './page.js';

/** The scopes the approval page names (openid and the rest need no words). */
export const APPROVAL_PAGE_SCOPES: readonly string[] = ['email', 'phone', 'profile'];

/** The end of an approval link, and its messages (written out, so the message-key check sees them). */
const DONE_MESSAGES = {
  invalid: { titleKey: 'ciba.done.invalid.title', leadKey: 'ciba.done.invalid.lead' },
  approved: { titleKey: 'ciba.done.approved.title', leadKey: 'ciba.done.approved.lead' },
  refused: { titleKey: 'ciba.done.refused.title', leadKey: 'ciba.done.refused.lead' },
} as const;

/**
 * /account/ciba/:secret: the link a CIBA request (LINE mini-app method 2) sends to the person. They
 * sign in with their own method, see which app asks and its binding message, and approve or refuse.
 */
export function cibaRoutes(services: Services): Router {
  const { host, config, cibaApprovals, ciba } = services;
  const approval = new BackchannelApproval({ approvals: cibaApprovals, results: ciba.results(() => host.current) });
  const router = new Router({ prefix: '/account/ciba' });
  router.use(formBody(), requireCsrf());

  const session = async (ctx: Context) => {
    const s = await readAccountSession(host.current, ctx);
    return s && { accountId: s.accountId, loginTs: s.loginTs, amr: s.amr };
  };

  const show = (ctx: Context, secret: string, step: ApprovalStep | ApprovalOutcome) => {
    switch (step.kind) {
      case 'invalid':
        ctx.status = 400;
        return page(ctx, services, 'ciba-done', { outcome: 'invalid', ...DONE_MESSAGES.invalid });
      case 'sign_in':
        return ctx.redirect(accountLoginUrl(ctx, config.issuer, { returnTo: `/account/ciba/${secret}`, reauth: step.reauth, locale: ctx.state.locale }));
      case 'other_account':
        ctx.status = 403;
        return page(ctx, services, 'ciba-approve', { otherAccount: true, switchHref: `/account/login?${new URLSearchParams({ return: `/account/ciba/${secret}`, reauth: '1' })}` });
      case 'ready':
        return page(ctx, services, 'ciba-approve', {
          otherAccount: false, action: `/account/ciba/${secret}`, clientName: step.approval.clientName, bindingMessage: step.approval.bindingMessage,
          scopes: step.approval.scope.split(' ').filter((s) => APPROVAL_PAGE_SCOPES.includes(s)),
        });
      case 'decided':
        return page(ctx, services, 'ciba-done', { outcome: step.decision, clientName: step.approval.clientName, ...DONE_MESSAGES[step.decision] });
    }
  };

  router.get('/:secret', async (ctx) => {
    const secret = parseApprovalLinkSecret(ctx.params.secret);
    show(ctx, secret ?? '', await approval.open(secret, await session(ctx)));
  });

  router.post('/:secret', async (ctx) => {
    const secret = parseApprovalLinkSecret(ctx.params.secret);
    const decision = (ctx.request.body as Record<string, unknown>).decision;
    if (decision !== 'approve' && decision !== 'refuse') {
      ctx.status = 400;
      return page(ctx, services, 'error', { messageKey: 'error.bad_request', status: 400 });
    }
    show(ctx, secret ?? '', await approval.decide(secret, await session(ctx), decision === 'approve' ? 'approved' : 'refused'));
  });

  return router;
}
