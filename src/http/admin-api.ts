import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { Context, Next } from 'koa';
import { isUuid } from '../accounts/account-store.js';
import type { UpstreamProviderName } from '../accounts/upstream-identity-store.js';
import { RETRY_AFTER_SECONDS, unavailableDependency } from '../failures/dependency.js';
import type { AccountDetails, AccountQuery, Actor, LifecycleRefusal } from '../flows/account-lifecycle.js';
import type { RateLimitRule } from '../limits/rate-limiter.js';
import { authorizeAdminCall } from '../oidc/admin-access.js';
import { ADMIN_READ_SCOPE, ADMIN_WRITE_SCOPE, type AdminScope } from '../oidc/client-metadata.js';
import type { Services } from '../services.js';
import { adminOpenApiDocument } from './admin-openapi.js';

/** Where the Admin API lives; its OpenAPI 3.1 document is at `${ADMIN_API_PREFIX}/openapi.json`. */
export const ADMIN_API_PREFIX = '/admin/api/v1';

/** Calls per operator client per minute (support tooling, not bulk jobs: a runaway script stops here). */
export const ADMIN_API_RATE_LIMIT: RateLimitRule = { name: 'admin_api', limit: 120, windowSeconds: 60 };

/** The longest period one audit export may cover. */
export const MAX_AUDIT_EXPORT_DAYS = 366;

/** A refusal the API answers with, and the status it maps to (src/http/admin-openapi.ts documents each). */
const REFUSAL_STATUS: Record<LifecycleRefusal, { status: 404 | 409; error: string; description: string }> = {
  not_found: { status: 404, error: 'not_found', description: 'no such account (or, for a provider, no such link on it)' },
  already_disabled: { status: 409, error: 'already_disabled', description: 'the account is already disabled' },
  not_disabled: { status: 409, error: 'not_disabled', description: 'the account is not disabled' },
  last_method: { status: 409, error: 'last_method', description: 'this is the account\'s last way to sign in: it cannot be unlinked' },
};

class BadInput extends Error {}

/** The one way a call is refused: JSON body, no-store, and the header RFC 6750 asks for on 401 and 403. */
function refuse(ctx: Context, status: number, error: string, description: string, scope?: AdminScope) {
  ctx.status = status;
  ctx.set('Cache-Control', 'no-store');
  if (status === 401) ctx.set('WWW-Authenticate', `Bearer realm="tsunagi-admin"${error === 'invalid_token' && ctx.get('authorization') ? ', error="invalid_token"' : ''}`);
  if (status === 403 && scope) ctx.set('WWW-Authenticate', `Bearer realm="tsunagi-admin", error="insufficient_scope", scope="${scope}"`);
  ctx.body = { error, error_description: description, ...(scope ? { scope } : {}) };
}

const text = (value: unknown, field: string, max: number): string => {
  if (typeof value !== 'string' || value.length === 0 || value.length > max || value.includes('\0')) throw new BadInput(`${field} must be a non-empty string of at most ${max} characters`);
  return value;
};

/** GET /accounts: exactly one of email, phone, sub (with an optional client_id), or issuer + subject. */
function accountQueryOf(query: Record<string, unknown>): AccountQuery {
  const given = ['email', 'phone', 'sub', 'issuer'].filter((k) => query[k] !== undefined);
  if (given.length !== 1) throw new BadInput('give exactly one of email, phone, sub (optionally with client_id), or issuer with subject');
  if (query.client_id !== undefined && given[0] !== 'sub') throw new BadInput('client_id goes only with sub');
  if (query.subject !== undefined && given[0] !== 'issuer') throw new BadInput('subject goes only with issuer');
  switch (given[0]) {
    case 'email': return { email: text(query.email, 'email', 320) };
    case 'phone': return { phone: text(query.phone, 'phone', 32) };
    case 'sub': return { sub: text(query.sub, 'sub', 255), clientId: query.client_id === undefined ? undefined : text(query.client_id, 'client_id', 255) };
    default: return { issuer: text(query.issuer, 'issuer', 2048), subject: text(query.subject, 'subject', 255) };
  }
}

function accountIdOf(ctx: Context): string {
  const id = String(ctx.params.id ?? '');
  if (!isUuid(id)) throw new BadInput('the account id is a UUID');
  return id;
}

function providerOf(ctx: Context): UpstreamProviderName {
  const p = ctx.params.provider;
  if (p !== 'google' && p !== 'apple') throw new BadInput('provider is google or apple');
  return p;
}

function instantOf(value: unknown, field: string): Date {
  const raw = text(value, field, 64);
  // RFC 3339 only: Date.parse also takes forms whose meaning depends on the server's time zone.
  if (!/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/.test(raw)) throw new BadInput(`${field} is an RFC 3339 date or date-time (2026-12-01 or 2026-12-01T00:00:00Z)`);
  const at = new Date(raw);
  if (Number.isNaN(at.getTime())) throw new BadInput(`${field} is not a valid date`);
  return at;
}

function periodOf(query: Record<string, unknown>): { from: Date; to: Date; accountId?: string } {
  const from = instantOf(query.from, 'from');
  const to = instantOf(query.to, 'to');
  if (from.getTime() >= to.getTime()) throw new BadInput('from must be before to');
  if (to.getTime() - from.getTime() > MAX_AUDIT_EXPORT_DAYS * 86_400_000) throw new BadInput(`a period covers at most ${MAX_AUDIT_EXPORT_DAYS} days`);
  if (query.account_id === undefined) return { from, to };
  const accountId = text(query.account_id, 'account_id', 36);
  if (!isUuid(accountId)) throw new BadInput('account_id is a UUID');
  return { from, to, accountId };
}

/** What the API shows of an account: never a session's id (it is the session cookie's value). */
function accountView(details: AccountDetails) {
  return { ...details, sessions: details.sessions.map(({ id: _id, ...session }) => session) };
}

/**
 * The Admin API for support tooling (README "Admin API"): find, show, disable, enable, delete,
 * unlink a provider, end sessions, export audit events. Each call: a client-credentials token of an
 * Admin API client (src/oidc/admin-access.ts) with the operation's scope, then the per-client rate
 * limit, then the operation in src/flows/account-lifecycle.ts, which records the audit event with
 * the operator client's id. A refusal after authentication is audited too (admin_api_refused).
 */
export function adminApiRoutes(services: Services): Router {
  const { host, lifecycle, limiter, accounts, log } = services;
  const router = new Router({ prefix: ADMIN_API_PREFIX });
  const json = bodyParser({ enableTypes: ['json'], jsonLimit: '8kb', encoding: 'utf-8' });

  router.use(async (ctx: Context, next: Next) => {
    try {
      await next();
    } catch (err) {
      if (err instanceof BadInput) return refuse(ctx, 400, 'invalid_request', err.message);
      const unavailable = unavailableDependency(err);
      if (unavailable) {
        ctx.set('Retry-After', String(RETRY_AFTER_SECONDS));
        return refuse(ctx, 503, 'temporarily_unavailable', unavailable.error_description);
      }
      log.error({ err, path: ctx.path }, 'admin API call failed');
      refuse(ctx, 500, 'server_error', 'the call failed; see the server log');
    }
  });

  /** Authenticates, checks the scope and the rate limit; the operator client's actor, or undefined after refusing. */
  const operator = async (ctx: Context, scope: AdminScope, operation: string): Promise<Actor & { kind: 'admin_client' } | undefined> => {
    const access = await authorizeAdminCall(host.current, ctx.get('authorization') || undefined, scope);
    if (!access.ok) {
      if (access.status === 401) {
        log.warn({ operation, ip: ctx.ip, tokenPresented: access.tokenPresented }, 'admin API call without a valid token');
        refuse(ctx, 401, access.error, access.description);
        return undefined;
      }
      // Counted like any call of that client, so refusals cannot flood the audit trail either.
      if (!(await withinRateLimit(ctx, access.clientId, operation))) return undefined;
      await audited(ctx, { kind: 'admin_client', clientId: access.clientId, ip: ctx.ip }, operation, 403, 'insufficient_scope');
      refuse(ctx, 403, access.error, access.description, scope);
      return undefined;
    }
    if (!(await withinRateLimit(ctx, access.clientId, operation))) return undefined;
    return { kind: 'admin_client', clientId: access.clientId, ip: ctx.ip };
  };

  /** Counts the call against its client's window; answers 429 (not audited: a runaway client would fill the trail) when over. */
  const withinRateLimit = async (ctx: Context, clientId: string, operation: string): Promise<boolean> => {
    const verdict = await limiter.hit(ADMIN_API_RATE_LIMIT, clientId);
    if (verdict.allowed) return true;
    log.warn({ operation, clientId }, 'admin API rate limit reached');
    ctx.set('Retry-After', String(verdict.retryAfterSeconds));
    refuse(ctx, 429, 'rate_limited', `at most ${ADMIN_API_RATE_LIMIT.limit} calls a minute per client; try again in ${verdict.retryAfterSeconds} s`);
    return false;
  };

  /** An authenticated call that was refused: recorded with the operator client's id. */
  const audited = async (_ctx: Context, actor: Actor & { kind: 'admin_client' }, operation: string, status: number, reason: string, account?: { id: string; known: boolean }) => {
    await accounts.recordAuditEvent({
      type: 'admin_api_refused', accountId: account?.known ? account.id : null, clientId: actor.clientId, ip: actor.ip ?? null,
      data: { operation, status, reason, actor: `admin:${actor.clientId}`, ...(account && !account.known ? { requestedAccountId: account.id } : {}) },
    });
  };

  /** Runs a write or read operation with its refusals mapped once. */
  const refusal = async (ctx: Context, actor: Actor & { kind: 'admin_client' }, operation: string, reason: LifecycleRefusal, accountId: string) => {
    const r = REFUSAL_STATUS[reason];
    // A 404's id may name no account: it goes into the data, not the account column.
    await audited(ctx, actor, operation, r.status, reason, { id: accountId, known: r.status !== 404 });
    refuse(ctx, r.status, r.error, r.description);
  };

  const respond = (ctx: Context, body: unknown) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = body;
  };

  /** Parses what the call takes before anything else happens; bad input is refused (and audited) as 400. */
  const withInput = async <T>(ctx: Context, actor: Actor & { kind: 'admin_client' }, operation: string, parse: () => T): Promise<T | undefined> => {
    try {
      return parse();
    } catch (err) {
      if (!(err instanceof BadInput)) throw err;
      await audited(ctx, actor, operation, 400, 'invalid_request');
      refuse(ctx, 400, 'invalid_request', err.message);
      return undefined;
    }
  };

  router.get('/openapi.json', (ctx) => {
    ctx.set('Cache-Control', 'public, max-age=300');
    ctx.body = adminOpenApiDocument(services.config.issuer);
  });

  router.get('/accounts', async (ctx) => {
    const actor = await operator(ctx, ADMIN_READ_SCOPE, 'findAccounts');
    if (!actor) return;
    const query = await withInput(ctx, actor, 'findAccounts', () => accountQueryOf(ctx.query as Record<string, unknown>));
    if (!query) return;
    respond(ctx, { accounts: await lifecycle.findAccounts(query, actor) });
  });

  router.get('/accounts/:id', async (ctx) => {
    const actor = await operator(ctx, ADMIN_READ_SCOPE, 'showAccount');
    if (!actor) return;
    const id = await withInput(ctx, actor, 'showAccount', () => accountIdOf(ctx));
    if (!id) return;
    const details = await lifecycle.showAccount(id, actor);
    if (!details) return refusal(ctx, actor, 'showAccount', 'not_found', id);
    respond(ctx, accountView(details));
  });

  router.post('/accounts/:id/disable', async (ctx) => {
    const actor = await operator(ctx, ADMIN_WRITE_SCOPE, 'disableAccount');
    if (!actor) return;
    // The body is read only after the caller is known, so a stranger's malformed body is still a 401.
    try {
      await json(ctx, async () => undefined);
    } catch {
      await audited(ctx, actor, 'disableAccount', 400, 'invalid_request');
      return refuse(ctx, 400, 'invalid_request', 'the body is a JSON object ({"reason": "..."}) or empty');
    }
    const input = await withInput(ctx, actor, 'disableAccount', () => {
      const body = (ctx.request.body ?? {}) as unknown;
      if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new BadInput('the body is a JSON object ({"reason": "..."}) or empty');
      const reason = (body as { reason?: unknown }).reason;
      return { id: accountIdOf(ctx), reason: reason === undefined ? 'operator' : text(reason, 'reason', 200) };
    });
    if (!input) return;
    const outcome = await lifecycle.disableAccount(input.id, actor, input.reason);
    if (!outcome.ok) return refusal(ctx, actor, 'disableAccount', outcome.reason, input.id);
    respond(ctx, { disabled: true, sessions: outcome.sessions, grants: outcome.grants, logouts: outcome.logouts });
  });

  router.post('/accounts/:id/enable', async (ctx) => {
    const actor = await operator(ctx, ADMIN_WRITE_SCOPE, 'enableAccount');
    if (!actor) return;
    const id = await withInput(ctx, actor, 'enableAccount', () => accountIdOf(ctx));
    if (!id) return;
    const outcome = await lifecycle.enableAccount(id, actor);
    if (!outcome.ok) return refusal(ctx, actor, 'enableAccount', outcome.reason, id);
    respond(ctx, { enabled: true });
  });

  router.delete('/accounts/:id', async (ctx) => {
    const actor = await operator(ctx, ADMIN_WRITE_SCOPE, 'deleteAccount');
    if (!actor) return;
    const id = await withInput(ctx, actor, 'deleteAccount', () => accountIdOf(ctx));
    if (!id) return;
    const outcome = await lifecycle.deleteAccount(id, actor);
    if (!outcome.ok) return refusal(ctx, actor, 'deleteAccount', outcome.reason, id);
    respond(ctx, {
      deleted: true, sessions: outcome.sessions, grants: outcome.grants, logouts: outcome.logouts,
      appleTokens: outcome.appleTokens, confirmationSent: outcome.confirmationSentTo !== undefined,
    });
  });

  router.delete('/accounts/:id/providers/:provider', async (ctx) => {
    const actor = await operator(ctx, ADMIN_WRITE_SCOPE, 'unlinkProvider');
    if (!actor) return;
    const input = await withInput(ctx, actor, 'unlinkProvider', () => ({ id: accountIdOf(ctx), provider: providerOf(ctx) }));
    if (!input) return;
    const outcome = await lifecycle.unlinkProvider(input.id, input.provider, actor);
    if (!outcome.ok) return refusal(ctx, actor, 'unlinkProvider', outcome.reason, input.id);
    respond(ctx, { unlinked: input.provider, appleTokenRevoked: outcome.appleTokenRevoked });
  });

  router.delete('/accounts/:id/sessions', async (ctx) => {
    const actor = await operator(ctx, ADMIN_WRITE_SCOPE, 'endSessions');
    if (!actor) return;
    const id = await withInput(ctx, actor, 'endSessions', () => accountIdOf(ctx));
    if (!id) return;
    const outcome = await lifecycle.endSessions(id, actor);
    if (!outcome.ok) return refusal(ctx, actor, 'endSessions', outcome.reason, id);
    respond(ctx, { sessions: outcome.sessions, grants: outcome.grants, logouts: outcome.logouts });
  });

  router.get('/audit-events', async (ctx) => {
    const actor = await operator(ctx, ADMIN_READ_SCOPE, 'exportAuditEvents');
    if (!actor) return;
    const period = await withInput(ctx, actor, 'exportAuditEvents', () => periodOf(ctx.query as Record<string, unknown>));
    if (!period) return;
    const events = await lifecycle.exportAuditEvents(period, actor);
    respond(ctx, { from: period.from.toISOString(), to: period.to.toISOString(), events });
  });

  return router;
}
