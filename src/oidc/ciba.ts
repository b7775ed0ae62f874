import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Configuration, KoaContextWithOIDC, Provider, UnknownObject } from 'oidc-provider';
import { errors } from 'oidc-provider';
import type { AccountStore } from '../accounts/account-store.js';
import { approvalLinkHash, type CibaApprovalStore, type CibaChannel } from '../accounts/ciba-approval-store.js';
import { parseEmailAddress } from '../accounts/email-address.js';
import { parsePhoneNumber } from '../accounts/phone-number.js';
import type { Mailer } from '../delivery/mailer.js';
import type { TextMessageSender } from '../delivery/sms.js';
import { acrFor } from '../methods/acr.js';
import { negotiateLocale, translator } from '../i18n/index.js';
import { hitAll, type RateLimiter, type RateLimitRule } from '../limits/rate-limiter.js';
import type { Logger } from '../logger.js';

/**
 * OpenID CIBA (Client-Initiated Backchannel Authentication Core 1.0), poll mode: "method 2" of LINE
 * mini-apps. A confidential backend sends the email address or phone number a person typed
 * (`login_hint`) and a short `binding_message` it shows that person; Tsunagi sends a link to the
 * address stored on the matching account; the person signs in at Tsunagi with their own method and
 * approves or refuses (src/flows/backchannel-approval.ts); the backend polls the token endpoint.
 *
 * Knowing an address proves nothing, so an unknown address is answered exactly like a known one
 * (an auth_req_id that simply never gets approved and expires) and nobody is reached.
 */
export const CIBA_GRANT = 'urn:openid:params:grant-type:ciba';

/** Seconds a backend waits between polls (the `interval` of the answer; CIBA's default is also 5). */
export const CIBA_POLL_INTERVAL_SECONDS = 5;

/** Longest life of a request (and its link); a backend may ask for less with `requested_expiry`. */
export const CIBA_MAX_EXPIRY_SECONDS = 600;

export interface CibaSendLimits {
  perAddress: RateLimitRule;
  perAddressDaily: RateLimitRule;
  perClient: RateLimitRule;
  perIp: RateLimitRule;
}

// Every send costs the person attention (and an SMS costs money): per address like the sign-in codes;
// per client and per IP (the backend's own address: a person's IP never reaches Tsunagi here) so one
// backend cannot flood everyone.
export const CIBA_SEND_LIMITS: CibaSendLimits = {
  perAddress: { name: 'ciba:address', limit: 3, windowSeconds: 15 * 60 },
  perAddressDaily: { name: 'ciba:address-day', limit: 10, windowSeconds: 24 * 3600 },
  perClient: { name: 'ciba:client', limit: 300, windowSeconds: 15 * 60 },
  perIp: { name: 'ciba:ip', limit: 300, windowSeconds: 15 * 60 },
};

// Letters and digits of any script plus a few separators, at most 20: short enough to compare at a
// glance, and no room for a URL or instructions ("call this number") in someone else's name.
const BINDING_MESSAGE = /^[\p{L}\p{N}][\p{L}\p{N}\p{M} ._+\-/!?#]{0,19}$/u;

/** Where the request goes: the account's own stored address, or nowhere (unknown address). */
type Target =
  | { kind: 'reachable'; accountId: string; channel: CibaChannel; to: string }
  | { kind: 'unreachable'; placeholderAccountId: string };

const UNREACHABLE_PREFIX = 'ciba-unreachable:';

export class CibaSlowDown extends errors.OIDCProviderError {
  constructor(retryAfterSeconds: number) {
    super(429, 'slow_down');
    Object.assign(this, { error_description: `too many backchannel authentication requests; retry after ${retryAfterSeconds} seconds` });
  }
}

/** What oidc-provider does with the decision (CibaBackchannel.results): the backend's next poll gets tokens or access_denied. */
export interface BackchannelResults {
  approve(authReqId: string, approval: { accountId: string; scope: string; amr: string[]; authTime: number }): Promise<boolean>;
  refuse(authReqId: string): Promise<boolean>;
}

export interface CibaDeps {
  issuer: string;
  defaultPhoneRegion: string;
  accounts: AccountStore;
  approvals: CibaApprovalStore;
  limiter: RateLimiter;
  mailer: Mailer;
  /** Undefined when no SMS can carry a text (no Twilio sender, not in development): phones are unreachable. */
  textSender: TextMessageSender | undefined;
  log: Logger;
  limits?: CibaSendLimits;
}

type CibaFeature = NonNullable<NonNullable<Configuration['features']>['ciba']>;

export class CibaBackchannel {
  // The target chosen by processLoginHint, for the later hooks of the same request (same ctx).
  private readonly targets = new WeakMap<object, Target>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly limits: CibaSendLimits;

  constructor(private readonly deps: CibaDeps) {
    this.limits = deps.limits ?? CIBA_SEND_LIMITS;
  }

  /** features.ciba for oidc-provider. */
  feature(): CibaFeature {
    return {
      enabled: true,
      deliveryModes: ['poll'],
      processLoginHint: (ctx, loginHint) => this.processLoginHint(ctx, loginHint ?? ''),
      async processLoginHintToken() {
        throw new errors.InvalidRequest('login_hint_token is not supported: send login_hint (the email address or phone number the person typed)');
      },
      async validateBindingMessage(_ctx, bindingMessage) {
        if (typeof bindingMessage !== 'string' || !BINDING_MESSAGE.test(bindingMessage.normalize('NFC'))) {
          throw new errors.InvalidBindingMessage('binding_message is required: 1 to 20 letters or digits (any script), optionally with spaces and . _ + - / ! ? #, starting with a letter or digit');
        }
      },
      async validateRequestContext() {
        // request_context is not used.
      },
      verifyUserCode: async (ctx, _account, userCode) => {
        if (userCode !== undefined) throw new errors.InvalidRequest('user_code is not supported');
        // id_token_hint gets this far too; only a typed address decides where the request goes.
        if (!this.targets.has(ctx)) throw new errors.InvalidRequest('send login_hint (the email address or phone number the person typed); id_token_hint is not accepted');
      },
      triggerAuthenticationDevice: async (ctx, request, _account, client) => {
        const target = this.targets.get(ctx);
        if (!target || target.kind === 'unreachable') return;
        const locale = negotiateLocale({ uiLocales: typeof ctx.oidc.params?.ui_locales === 'string' ? ctx.oidc.params.ui_locales : undefined });
        const clientName = (client.clientName as string | undefined) ?? client.clientId;
        // What the backend was just told (oidc-provider's answer is already in ctx.body).
        const answered = (ctx.body as { expires_in?: unknown } | undefined)?.expires_in;
        const expiresIn = typeof answered === 'number' ? answered : CibaBackchannel.requestTtl(ctx);
        const now = new Date();
        // Stored and sent after the answer, so a known address does not answer measurably later than an unknown one.
        this.track(this.notify({
          authReqId: request.jti, accountId: target.accountId, clientId: client.clientId, clientName,
          bindingMessage: String(ctx.oidc.params?.binding_message ?? '').normalize('NFC'), scope: request.scope ?? 'openid',
          channel: target.channel, to: target.to, createdAt: now, expiresAt: new Date(now.getTime() + expiresIn * 1000), locale,
        }));
      },
    };
  }

  /** BackchannelAuthenticationRequest TTL: the backend's requested_expiry, at most CIBA_MAX_EXPIRY_SECONDS. */
  static requestTtl(ctx: KoaContextWithOIDC): number {
    const requested = Number(ctx?.oidc?.params?.requested_expiry);
    return Number.isSafeInteger(requested) && requested > 0 ? Math.min(requested, CIBA_MAX_EXPIRY_SECONDS) : CIBA_MAX_EXPIRY_SECONDS;
  }

  /**
   * findAccount's answer for the placeholder of an unknown address, only inside the request that made
   * it: oidc-provider needs an account to store the request under; nobody can ever approve it.
   */
  unreachableAccount(ctx: unknown, sub: string): { accountId: string; claims(): Promise<{ sub: string } & UnknownObject> } | undefined {
    if (!sub.startsWith(UNREACHABLE_PREFIX) || typeof ctx !== 'object' || ctx === null) return undefined;
    const target = this.targets.get(ctx);
    if (target?.kind !== 'unreachable' || target.placeholderAccountId !== sub) return undefined;
    return { accountId: sub, claims: async () => ({ sub }) };
  }

  /** Waits until every notification started so far was sent or failed (tests, graceful shutdown). */
  async idle(): Promise<void> {
    while (this.inFlight.size) await Promise.allSettled([...this.inFlight]);
  }

  /** What the approval page hands back to oidc-provider. */
  results(provider: () => Provider): BackchannelResults {
    return {
      async approve(authReqId, approval) {
        const p = provider();
        const request = await p.BackchannelAuthenticationRequest.find(authReqId);
        if (!request || request.accountId !== approval.accountId || request.grantId || request.error) return false;
        const grant = new p.Grant({ clientId: request.clientId as string, accountId: approval.accountId });
        grant.addOIDCScope(approval.scope);
        await grant.save();
        // The tokens belong to the backend, not to the browser the person approved in.
        await p.backchannelResult(request, grant, { amr: approval.amr, acr: acrFor(approval.amr), authTime: approval.authTime, expiresWithSession: false });
        return true;
      },
      async refuse(authReqId) {
        const p = provider();
        const request = await p.BackchannelAuthenticationRequest.find(authReqId);
        if (!request || request.grantId || request.error) return false;
        await p.backchannelResult(request, new errors.AccessDenied('the person refused this request'));
        return true;
      },
    };
  }

  /**
   * Middleware on oidc-provider (provider.use) for polling, as for the device grant: the answer says
   * how often to poll, and a backend polling a pending request faster gets `slow_down`.
   */
  polling(limiter: RateLimiter) {
    const rule = { name: 'ciba-poll', limit: 1, windowSeconds: CIBA_POLL_INTERVAL_SECONDS };
    return async (ctx: KoaContextWithOIDC, next: () => Promise<void>) => {
      await next();
      const route = ctx.oidc?.route;
      const body = ctx.body as Record<string, unknown> | undefined;
      if (typeof body !== 'object' || body === null) return;
      // oidc-provider always advertises user_code; Tsunagi refuses it (verifyUserCode).
      if (route === 'discovery' && body.backchannel_user_code_parameter_supported === true) {
        ctx.body = { ...body, backchannel_user_code_parameter_supported: false };
        return;
      }
      if (route === 'backchannel_authentication' && ctx.status === 200 && typeof body.auth_req_id === 'string') {
        ctx.body = { ...body, interval: CIBA_POLL_INTERVAL_SECONDS };
        return;
      }
      if (route !== 'token' || body.error !== 'authorization_pending' || ctx.oidc.params?.grant_type !== CIBA_GRANT) return;
      const authReqId = ctx.oidc.params?.auth_req_id;
      if (typeof authReqId !== 'string') return;
      const verdict = await limiter.hit(rule, createHash('sha256').update(authReqId).digest('base64url'));
      if (!verdict.allowed) {
        ctx.body = { error: 'slow_down', error_description: `poll at most every ${CIBA_POLL_INTERVAL_SECONDS} seconds, and 5 seconds less often after each slow_down` };
      }
    };
  }

  private async processLoginHint(ctx: KoaContextWithOIDC, loginHint: string): Promise<string> {
    const email = loginHint.includes('@') ? parseEmailAddress(loginHint) : undefined;
    const phone = email ? undefined : parsePhoneNumber(loginHint, this.deps.defaultPhoneRegion);
    if (!email && !phone) throw new errors.InvalidRequest('login_hint must be an email address or a phone number');
    const addressKey = email ? email.key : (phone as string);
    const clientId = ctx.oidc.client?.clientId ?? '';
    // Counted before the lookup, for known and unknown addresses alike.
    const verdict = await hitAll(this.deps.limiter, [
      [this.limits.perAddress, addressKey], [this.limits.perAddressDaily, addressKey], [this.limits.perClient, clientId], [this.limits.perIp, ctx.ip],
    ]);
    if (!verdict.allowed) {
      ctx.set('Retry-After', String(verdict.retryAfterSeconds));
      throw new CibaSlowDown(verdict.retryAfterSeconds);
    }

    const found = email ? await this.deps.accounts.findAccountByVerifiedEmail(email) : await this.deps.accounts.findAccountByVerifiedPhone(phone as string);
    // A disabled account is answered like an unknown address: no approval link goes out.
    const account = found?.disabledAt ? undefined : found;
    let target: Target | undefined;
    if (account && email) {
      // The address as stored on the account, never the string the backend sent.
      const stored = account.emails.find((e) => e.key === email.key && e.verifiedAt);
      if (stored) target = { kind: 'reachable', accountId: account.id, channel: 'email', to: stored.address };
    } else if (account && phone && this.deps.textSender) {
      const stored = account.phones.find((p) => p.phone === phone && p.verifiedAt);
      if (stored) target = { kind: 'reachable', accountId: account.id, channel: 'sms', to: stored.phone };
    }
    target ??= { kind: 'unreachable', placeholderAccountId: `${UNREACHABLE_PREFIX}${randomUUID()}` };
    this.targets.set(ctx, target);
    return target.kind === 'reachable' ? target.accountId : target.placeholderAccountId;
  }

  private track(work: Promise<void>): void {
    const tracked = work.catch((err: unknown) => this.deps.log.error({ err }, 'CIBA approval link could not be sent'))
      .finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  private async notify(n: {
    authReqId: string; accountId: string; clientId: string; clientName: string; bindingMessage: string; scope: string;
    channel: CibaChannel; to: string; createdAt: Date; expiresAt: Date; locale: 'en' | 'ja';
  }): Promise<void> {
    const secret = randomBytes(32).toString('base64url');
    await this.deps.approvals.create({
      authReqId: n.authReqId, accountId: n.accountId, clientId: n.clientId, clientName: n.clientName, bindingMessage: n.bindingMessage,
      scope: n.scope, channel: n.channel, linkHash: approvalLinkHash(secret), createdAt: n.createdAt, expiresAt: n.expiresAt,
    });
    const t = translator(n.locale);
    const vars = {
      client: n.clientName, message: n.bindingMessage, link: `${this.deps.issuer}/account/ciba/${secret}`,
      minutes: Math.max(1, Math.round((n.expiresAt.getTime() - Date.now()) / 60_000)),
    };
    if (n.channel === 'email') {
      await this.deps.mailer.send({ to: n.to, subject: t('ciba.mail.subject', vars), text: t('ciba.mail.body', vars) });
    } else {
      await this.deps.textSender?.send(n.to, t('ciba.sms.body', vars));
    }
  }
}
