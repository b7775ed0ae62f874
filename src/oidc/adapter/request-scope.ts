import { AsyncLocalStorage } from 'node:async_hooks';
import type { Account } from '../../accounts/account-store.js';
import type { AdapterPayload } from './types.js';

/** A stored artifact as a find reads it: the payload and when it was first consumed. */
export interface StoredRow { payload: AdapterPayload; consumed_at: Date | null }

/** What the request being served is (oidc-provider's ctx.oidc, read lazily: it is filled in as the request goes). */
export interface RequestView {
  /** oidc-provider's route name ('token', 'userinfo', 'authorization', 'introspection', ...) once known. */
  route(): string | undefined;
  /** The client this request is for, once known (the authorization endpoint's client_id). */
  clientId(): string | undefined;
}

/**
 * What one request has read from Postgres, so oidc-provider's lookups that follow one another
 * (refresh token -> session -> grant -> account) are answered by the one query that read them all.
 * It lives exactly as long as one request to oidc-provider: nothing here outlives the response, so
 * a grant revoked, an account deleted or a session ended by another request is seen by the next one.
 * A write by this request to a model drops what this request remembers of that model.
 */
export class RequestScope {
  private readonly rows = new Map<string, Promise<StoredRow | undefined>>();
  private readonly accounts = new Map<string, Promise<Account | undefined>>();

  private readonly tokenLookups = new Map<string, Promise<boolean>[]>();

  constructor(readonly request: RequestView) {}

  /** A find of a token of another kind by this value is under way in this request (resolves: found). */
  noteTokenLookup(value: string, found: Promise<boolean>): void {
    const list = this.tokenLookups.get(value) ?? [];
    list.push(found);
    this.tokenLookups.set(value, list);
  }

  /** Whether this request found `value` as a token of another kind (waits for the finds under way). */
  async foundAsOtherToken(value: string): Promise<boolean> {
    const lookups = this.tokenLookups.get(value);
    if (!lookups) return false;
    return (await Promise.all(lookups)).some(Boolean);
  }

  row(model: string, column: string, value: string): Promise<StoredRow | undefined> | undefined {
    return this.rows.get(rowKey(model, column, value));
  }

  rememberRow(model: string, column: string, value: string, row: Promise<StoredRow | undefined>): void {
    this.rows.set(rowKey(model, column, value), quiet(row));
  }

  account(id: string): Promise<Account | undefined> | undefined {
    return this.accounts.get(id);
  }

  rememberAccount(id: string, account: Promise<Account | undefined>): void {
    this.accounts.set(id, quiet(account));
  }

  /** This request wrote (or consumed, or deleted) artifacts of `model`: what it read of them is stale. */
  forgetModel(model: string): void {
    const prefix = `${model}\0`;
    for (const key of this.rows.keys()) if (key.startsWith(prefix)) this.rows.delete(key);
  }

  /** Whether a prefetch should read the account too (introspection and revocation never ask for it). */
  wantsAccount(): boolean {
    const route = this.request.route();
    return route !== 'introspection' && route !== 'revocation';
  }
}

const rowKey = (model: string, column: string, value: string) => `${model}\0${column}\0${value}`;

// A prefetch nobody ends up awaiting must not become an unhandled rejection; whoever awaits the
// promise still gets its error (a database that is down answers 503 as before).
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

const storage = new AsyncLocalStorage<RequestScope>();

/** The scope of the oidc-provider request being served, if any (none in the CLI, jobs, or Tsunagi's own pages). */
export function currentRequestScope(): RequestScope | undefined {
  return storage.getStore();
}

interface ProviderContext {
  query?: { client_id?: unknown };
  oidc?: { route?: string; params?: { client_id?: unknown }; client?: { clientId?: string } };
}

/** oidc-provider middleware (provider.use): one RequestScope per request. */
export function requestScopeMiddleware() {
  return (ctx: unknown, next: () => Promise<void>): Promise<void> => {
    const c = ctx as ProviderContext;
    const view: RequestView = {
      route: () => c.oidc?.route,
      clientId: () => {
        const fromParams = c.oidc?.params?.client_id;
        if (typeof fromParams === 'string') return fromParams;
        if (c.oidc?.client?.clientId) return c.oidc.client.clientId;
        // The authorization endpoint reads the session before it reads its parameters. This only
        // picks which of the session's own grants to read along; the client is checked as always.
        const fromQuery = c.query?.client_id;
        return typeof fromQuery === 'string' ? fromQuery : undefined;
      },
    };
    return storage.run(new RequestScope(view), next);
  };
}

/** Runs fn inside a fresh scope (tests, and callers outside oidc-provider's middleware). */
export function withRequestScope<T>(view: RequestView, fn: () => Promise<T>): Promise<T> {
  return storage.run(new RequestScope(view), fn);
}
