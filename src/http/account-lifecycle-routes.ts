import Router from '@koa/router';
import type { Context } from 'koa';
import type { Account } from '../accounts/account-store.js';
import type { Actor } from '../flows/account-lifecycle.js';
import { listGrantsOfAccount } from '../oidc/adapter/grant-lookup.js';
import type { Services } from '../services.js';
import { readAccountSession, signedInRecently } from './account-session.js';
import { ACCOUNT_APP_CLIENT_ID } from '../oidc/account-app.js';
import { requireCsrf } from './csrf.js';
import { formBody, page } from './page.js';

/**
 * The person's own end of the account lifecycle (issue 15), on the account page: download my data,
 * delete my account. Both need a sign-in within RECENT_SIGN_IN_SECONDS (10 minutes); an older one
 * goes through the account page's sign-in again with prompt=login, and comes back here.
 */
export function accountLifecycleRoutes(services: Services): Router {
  const { host, accounts, lifecycle, config, db } = services;
  const router = new Router({ prefix: '/account' });
  router.use(formBody(), requireCsrf());

  const seeOther = (ctx: Context, path: string) => { ctx.redirect(path); ctx.status = 303; };
  const personOf = (ctx: Context): Actor => ({ kind: 'person', ip: ctx.ip, userAgent: ctx.get('user-agent') || undefined });

  /** The account signed in within the last 10 minutes, or a redirect to (re-)authenticate and come back. */
  const recentlySignedIn = async (ctx: Context, returnTo: string): Promise<Account | undefined> => {
    const session = await readAccountSession(host.current, ctx);
    const account = session ? await accounts.findAccountById(session.accountId) : undefined;
    if (!session || !account) {
      seeOther(ctx, `/account/login?${new URLSearchParams({ return: returnTo })}`);
      return undefined;
    }
    if (!signedInRecently(session)) {
      seeOther(ctx, `/account/login?${new URLSearchParams({ return: returnTo, reauth: '1' })}`);
      return undefined;
    }
    return account;
  };

  const confirmationPage = async (ctx: Context, account: Account, error?: string) => {
    const names: string[] = [];
    for (const g of await listGrantsOfAccount(db.pool, account.id)) {
      if (g.clientId === ACCOUNT_APP_CLIENT_ID) continue;
      const name = ((await host.current.Client.find(g.clientId))?.clientName as string | undefined) ?? g.clientId;
      if (!names.includes(name)) names.push(name);
    }
    const separator = ctx.state.locale === 'ja' ? '、' : ', ';
    page(ctx, services, 'account-delete', {
      apps: names.join(separator),
      email: account.emails.find((e) => e.isPrimary && e.verifiedAt)?.address ?? '',
      retentionDays: config.auditRetentionDays,
      error,
    });
  };

  router.get('/delete', async (ctx) => {
    const account = await recentlySignedIn(ctx, '/account/delete');
    if (account) await confirmationPage(ctx, account);
  });

  router.post('/delete', async (ctx) => {
    const account = await recentlySignedIn(ctx, '/account/delete');
    if (!account) return;
    if ((ctx.request.body as Record<string, unknown>).confirm !== 'yes') {
      ctx.status = 400;
      return confirmationPage(ctx, account, 'account.delete.error.unconfirmed');
    }
    const outcome = await lifecycle.deleteAccount(account.id, personOf(ctx), ctx.state.locale);
    if (!outcome.ok) return seeOther(ctx, '/account/signed-out');
    seeOther(ctx, '/account/deleted');
  });

  router.get('/deleted', (ctx) => page(ctx, services, 'account-deleted', {}));

  // A download, not a page: everything stored about the person as one JSON file.
  router.get('/export', async (ctx) => {
    const account = await recentlySignedIn(ctx, '/account/export');
    if (!account) return;
    const data = await lifecycle.exportPersonalData(account.id, personOf(ctx));
    if (!data) return seeOther(ctx, '/account/signed-out');
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Content-Disposition', `attachment; filename="tsunagi-data-${data.exportedAt.slice(0, 10)}.json"`);
    ctx.type = 'application/json';
    ctx.body = JSON.stringify(data, null, 2);
  });

  return router;
}
