import type { Context } from 'koa';
import { errors, type InteractionResults } from 'oidc-provider';
import type { Account } from '../accounts/account-store.js';
import type { RequestFacts } from '../flows/login.js';
import { needsRequiredEmail } from '../flows/upstream.js';
import type { Proof } from '../accounts/proof.js';
import type { Services } from '../services.js';
import { applyUiLocales } from '../web/locale.js';

export type Interaction = Awaited<ReturnType<Services['host']['current']['interactionDetails']>>;

/** The browser's interaction cookie names another sign-in attempt than the page's URL. */
export class StaleInteraction extends Error {
  readonly status = 400;
  constructor() {
    super('this sign-in page belongs to another sign-in attempt');
    this.name = 'StaleInteraction';
  }
}

/** The sign-in named in the page's URL ran past its lifetime (INTERACTION_TTL): start again at the client. */
export class InteractionExpired extends Error {
  readonly status = 400;
  constructor() {
    super('this sign-in took longer than it may');
    this.name = 'InteractionExpired';
  }
}

/**
 * The small vocabulary every route inside an interaction uses: load the interaction named in the
 * path (and only if it is the one in this browser's cookie), finish it, send the browser elsewhere
 * inside it, and the facts the audit log records.
 */
export function interactionSession(services: Pick<Services, 'host' | 'proofs'>) {
  const { host, proofs } = services;
  return {
    /**
     * A client with `require_email` and an account without a verified email: the sign-in is held
     * (parked for this interaction, not stored in it, so it cannot be resumed around the step) and
     * the person is asked for an email first (src/http/upstream-routes.ts, /require-email).
     * True when held; the caller then sends the browser to `/interaction/<uid>/require-email`.
     */
    async holdForRequiredEmail(details: Interaction, account: Account, proof: Proof): Promise<boolean> {
      const clientRequiresEmail = async () => {
        const client = await host.current.Client.find(details.params.client_id as string);
        return (client as unknown as { require_email?: boolean } | undefined)?.require_email === true;
      };
      if (!(await needsRequiredEmail(account, clientRequiresEmail))) return false;
      await proofs.discard(details.uid, 'require_email', new Date());
      await proofs.park('require_email', { ...proof, interactionUid: details.uid, subject: { kind: 'account', accountId: account.id } }, 15 * 60);
      return true;
    },
    async load(ctx: Context): Promise<Interaction> {
      let details: Interaction;
      try {
        details = await host.current.interactionDetails(ctx.req, ctx.res);
      } catch (err) {
        // The adapter keeps an expired interaction findable for a while (src/oidc/adapter/types.ts),
        // so a person who took too long is told so, rather than that something is missing.
        if (err instanceof errors.SessionNotFound && typeof ctx.params.uid === 'string') {
          const expired = await host.current.Interaction.find(ctx.params.uid, { ignoreExpiration: true });
          if (expired?.isExpired) throw new InteractionExpired();
        }
        throw err;
      }
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
