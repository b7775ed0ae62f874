import Router from '@koa/router';
import type { Context } from 'koa';
import { exportAsCsv, exportAsJsonLines, InvalidCursor } from '../flows/client-export.js';
import { EXPORT_SCOPE } from '../oidc/configuration.js';
import type { Services } from '../services.js';
import { readAccountSession, signedInRecently } from './account-session.js';
import { requireCsrf } from './csrf.js';
import { formBody, page } from './page.js';

/**
 * LINE mini-app method 3.
 * - GET /export/changes?since=<cursor>&format=jsonl|csv: the client's incremental export, for a
 *   client-credentials access token with the `tsunagi:export` scope of a client registered with it.
 * - /account/link-code?client_id=...: the signed-in person makes a link code for that app (and
 *   shares with it from then on), or stops sharing.
 */
export function exportRoutes(services: Services): Router {
  const { host, exporter, exportStore } = services;
  const router = new Router();

  const refuse = (ctx: Context, status: number, error: string, description: string) => {
    ctx.status = status;
    if (status === 401 || status === 403) ctx.set('WWW-Authenticate', `Bearer error="${error}", scope="${EXPORT_SCOPE}"`);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { error, error_description: description };
  };

  /** The client that may export: registered with the scope, and allowed to list it. */
  const exportClient = async (clientId: string) => {
    const client = await host.current.Client.find(clientId);
    return client && String(client.scope ?? '').split(' ').includes(EXPORT_SCOPE) ? client : undefined;
  };

  router.get('/export/changes', async (ctx) => {
    const token = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/.exec(ctx.get('authorization'))?.[1];
    if (!token) return refuse(ctx, 401, 'invalid_token', 'send a client-credentials access token with the tsunagi:export scope');
    const credentials = await host.current.ClientCredentials.find(token);
    if (!credentials || credentials.isExpired) return refuse(ctx, 401, 'invalid_token', 'the access token is unknown or expired');
    if (!String(credentials.scope ?? '').split(' ').includes(EXPORT_SCOPE) || !(await exportClient(credentials.clientId as string))) {
      return refuse(ctx, 403, 'insufficient_scope', 'the token lacks the tsunagi:export scope, or its client is not registered for it');
    }
    const since = typeof ctx.query.since === 'string' ? ctx.query.since : undefined;
    const format = ctx.query.format === 'csv' ? 'csv' : 'jsonl';
    try {
      const result = await exporter.exportSince(credentials.clientId as string, since);
      ctx.set('Cache-Control', 'no-store');
      ctx.set('X-Next-Cursor', result.nextCursor);
      ctx.type = format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8';
      ctx.body = format === 'csv' ? exportAsCsv(result) : exportAsJsonLines(result);
    } catch (err) {
      if (!(err instanceof InvalidCursor)) throw err;
      refuse(ctx, 400, 'invalid_cursor', err.message);
    }
  });

  const account = new Router({ prefix: '/account/link-code' });
  account.use(formBody(), requireCsrf());

  const signedInFor = async (ctx: Context, clientId: string) => {
    const session = await readAccountSession(host.current, ctx);
    // A link code links an app to the account: it needs a sign-in from the last 10 minutes.
    if (!session || !signedInRecently(session)) {
      ctx.redirect(`/account/login?${new URLSearchParams({ return: `/account/link-code/${clientId}`, ...(session ? { reauth: '1' } : {}) })}`);
      return undefined;
    }
    return session;
  };
  const clientPage = async (ctx: Context) => {
    const clientId = String(ctx.params.clientId ?? '');
    const client = /^[\w.-]{1,128}$/.test(clientId) ? await exportClient(clientId) : undefined;
    if (!client) {
      ctx.status = 404;
      page(ctx, services, 'error', { messageKey: 'link_code.error.unknown_app', status: 404 });
      return undefined;
    }
    return { clientId, clientName: (client.clientName as string | undefined) ?? clientId };
  };

  account.get('/:clientId', async (ctx) => {
    const app = await clientPage(ctx);
    if (!app) return;
    const session = await signedInFor(ctx, app.clientId);
    if (!session) return;
    page(ctx, services, 'link-code', { ...app, action: `/account/link-code/${app.clientId}`, sharing: await exportStore.isMember(app.clientId, session.accountId) });
  });

  account.post('/:clientId', async (ctx) => {
    const app = await clientPage(ctx);
    if (!app) return;
    const session = await signedInFor(ctx, app.clientId);
    if (!session) return;
    const action = (ctx.request.body as Record<string, unknown>).action;
    if (action === 'stop') {
      await exportStore.leave(app.clientId, session.accountId);
      return page(ctx, services, 'link-code', { ...app, action: `/account/link-code/${app.clientId}`, sharing: false, stopped: true });
    }
    const issued = await exporter.issueLinkCode(app.clientId, session.accountId);
    page(ctx, services, 'link-code', {
      ...app, action: `/account/link-code/${app.clientId}`, sharing: true, code: issued.code, minutes: Math.round((issued.expiresAt.getTime() - Date.now()) / 60_000),
    });
  });

  router.use(account.routes(), account.allowedMethods());
  return router;
}
