// A dependency that is down or does not answer in time is not a bug in Tsunagi: it becomes one typed
// error, answered with 503 + Retry-After (OAuth `temporarily_unavailable`, or a readable page) instead
// of a 500 or a request that waits.

export type DependencyName = 'database' | 'redis';

/** Seconds a client is told to wait (Retry-After) when a dependency is unavailable. */
export const RETRY_AFTER_SECONDS = 5;

/**
 * Shaped like oidc-provider's exposed errors (`expose`, `statusCode`, `message` = the OAuth error
 * code, `error_description`): thrown from an adapter, the provider renders it as
 * `{"error":"temporarily_unavailable"}` with status 503 rather than as a `server_error`.
 */
export class DependencyUnavailable extends Error {
  readonly expose = true;
  readonly status = 503;
  readonly statusCode = 503;
  readonly error = 'temporarily_unavailable';
  readonly error_description: string;

  constructor(readonly dependency: DependencyName, readonly reason: string, options?: { cause?: unknown }) {
    super('temporarily_unavailable', options);
    this.name = 'DependencyUnavailable';
    this.error_description = `a service Tsunagi depends on (${dependency}) is unavailable; try again shortly`;
  }
}

export class DeadlineExceeded extends Error {
  constructor(readonly what: string, readonly ms: number) {
    super(`${what} did not answer within ${ms} ms`);
    this.name = 'DeadlineExceeded';
  }
}

/** Resolves as `work` does, or rejects with DeadlineExceeded after `ms` (the work itself is not cancelled). */
export function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineExceeded(what, ms)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

// Socket-level failures (refused, reset, unreachable) as Node reports them.
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ECONNABORTED']);
// Postgres SQLSTATEs that mean "the server cannot serve this now", not "this query is wrong":
// 08xxx connection exceptions, 53300 too many connections, 57014 statement_timeout, 57P01-57P03 shutdown / starting up.
const POSTGRES_UNAVAILABLE = /^(08...|53300|57014|57P0[1-3])$/;
// node-postgres reports its own deadlines and lost connections by message only.
const PG_CLIENT_MESSAGES = /timeout exceeded when trying to connect|Query read timeout|Connection terminated|connection timeout|Client has encountered a connection error|Client was closed and is not queryable/i;

/** True when a node-postgres error means the database is unreachable or too slow (not a bad query). */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const { code, message } = err as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && (NETWORK_CODES.has(code) || POSTGRES_UNAVAILABLE.test(code))) return true;
  return typeof message === 'string' && PG_CLIENT_MESSAGES.test(message);
}

/** The DependencyUnavailable somewhere in an error's cause chain (flows wrap errors), if any. */
export function unavailableDependency(err: unknown): DependencyUnavailable | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof DependencyUnavailable) return e;
  }
  return undefined;
}
