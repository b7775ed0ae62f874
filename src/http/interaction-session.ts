import type { Context } from 'koa';
import type { InteractionResults } from 'oidc-provider';
import type { RequestFacts } from '../flows/login.js';
import type { Services } from '../services.js';
import { applyUiLocales } from './locale.js';

export type Interaction = Awaited<ReturnType<Services['host']['current']['interactionDetails']>>;

/** The browser's interaction cookie names another sign-in attempt than the page's URL. */
export class StaleInteraction extends Error {
  readonly status = 400;
  constructor() {
    super('this sign-in page belongs to another sign-in attempt');
    this.name = 'StaleInteraction';
  }
}

/**
 * The small vocabulary every route inside an interaction uses: load the interaction named in the
 * path (and only if it is the one in this browser's cookie), finish it, send the browser elsewhere
 * inside it, and the facts the audit log records.
 */
export function interactionSession(services: Pick<Services, 'host'>) {
  const { host } = services;
  return {
    async load(ctx: Context): Promise<Interaction> {
      const details = await host.current.interactionDetails(ctx.req, ctx.res);
      if (details.uid !== ctx.params.uid) throw new StaleInteraction();
      applyUiLocales(ctx, details.params.ui_locales);
      return details;
    },
    async finish(ctx: Context, result: InteractionResults, merge = false): Promise<void> {
      const returnTo = await host.current.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: merge });
      ctx.redirect(returnTo);
      ctx.status = 303;
    },
    seeOther(ctx: Context, path: string, uid = ctx.params.uid ?? ''): void {
      ctx.redirect(`/interaction/${encodeURIComponent(uid)}${path}`);
      ctx.status = 303;
    },
    async clientName(details: Interaction): Promise<string> {
      const client = await host.current.Client.find(details.params.client_id as string);
      return (client?.clientName as string | undefined) ?? (details.params.client_id as string);
    },
    facts(ctx: Context, details: Interaction): RequestFacts {
      return { ip: ctx.ip, userAgent: ctx.get('user-agent') || undefined, clientId: details.params.client_id as string | undefined };
    },
  };
}
