import type { Context } from 'koa';
import { errors, type InteractionResults } from 'oidc-provider';
import type { RequestFacts } from '../flows/login.js';
import type { SignInFinish, SignInRequest } from '../flows/sign-in.js';
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
export function interactionSession(services: Pick<Services, 'host' | 'metrics'>) {
  const { host, metrics } = services;
  const clientRequiresEmail = async (details: Interaction): Promise<boolean> => {
    const client = await host.current.Client.find(details.params.client_id as string);
    return (client as unknown as { require_email?: boolean } | undefined)?.require_email === true;
  };
  const factsOf = (ctx: Context, details: Interaction): RequestFacts =>
    ({ ip: ctx.ip, userAgent: ctx.get('user-agent') || undefined, clientId: details.params.client_id as string | undefined });
  const finish = async (ctx: Context, result: InteractionResults, merge = false): Promise<void> => {
    const returnTo = await host.current.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: merge });
    ctx.redirect(returnTo);
    ctx.status = 303;
  };
  const seeOther = (ctx: Context, path: string, uid = ctx.params.uid ?? ''): void => {
    ctx.redirect(`/interaction/${encodeURIComponent(uid)}${path}`);
    ctx.status = 303;
  };
  return {
    /** Whether the interaction's client requires a verified email (src/flows/require-email.ts). */
    clientRequiresEmail,
    /** What the end of a sign-in (src/flows/sign-in.ts finishSignIn) needs to know about this request. */
    signInRequest(ctx: Context, details: Interaction): SignInRequest {
      return { interactionUid: details.uid, facts: factsOf(ctx, details), clientRequiresEmail: () => clientRequiresEmail(details) };
    },
    /**
     * Renders the end of a sign-in: the require-email page while it is held; otherwise the sign-in
     * goes back to the client, or, for an account made just now, is stored in the interaction first
     * (so nothing is lost if the person walks away) and Tsunagi offers to add a passkey.
     */
    async signedIn(ctx: Context, details: Interaction, finished: SignInFinish): Promise<void> {
      if (finished.next === 'require_email') return seeOther(ctx, '/require-email', details.uid);
      metrics.signIns.inc({ method: finished.method });
      if (!finished.newAccount) return finish(ctx, finished.result);
      await host.current.interactionResult(ctx.req, ctx.res, { ...finished.result, ...passkeyOfferMarker }, { mergeWithLastSubmission: false });
      seeOther(ctx, '/passkey-offer', details.uid);
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
    finish,
    seeOther,
    async clientName(details: Interaction): Promise<string> {
      const client = await host.current.Client.find(details.params.client_id as string);
      return (client?.clientName as string | undefined) ?? (details.params.client_id as string);
    },
    facts: factsOf,
  };
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
