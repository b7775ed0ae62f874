import { AsyncResource } from 'node:async_hooks';

/**
 * A timer, a socket or a promise keeps the async context it was made in, and inside oidc-provider
 * that context holds the request's whole koa ctx (request, response, all they reference). What is
 * armed or opened for a request but outlives it (a Redis command's timer, a pool connection, a
 * keep-alive timer) is therefore set up through this: from a context that belongs to no request.
 * The caller's own `await` still resumes in its own context.
 * test/integration/request-context-release.test.ts holds each place to it.
 */
const noRequest = new AsyncResource('tsunagi.outside-requests');

export function outsideRequests<T>(fn: () => T): T {
  return noRequest.runInAsyncScope(fn);
}
