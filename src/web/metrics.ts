import { createHash, timingSafeEqual } from 'node:crypto';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests = new Counter({ name: 'tsunagi_http_requests_total', help: 'HTTP requests by route, method and status', labelNames: ['route', 'method', 'status'], registers: [this.registry] });
  readonly httpDuration = new Histogram({
    name: 'tsunagi_http_request_duration_seconds', help: 'HTTP request latency by route', labelNames: ['route', 'method'],
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [this.registry],
  });
  readonly signIns = new Counter({ name: 'tsunagi_sign_ins_total', help: 'Successful sign-ins by method', labelNames: ['method'], registers: [this.registry] });
  readonly signups = new Counter({ name: 'tsunagi_signups_total', help: 'Accounts created', registers: [this.registry] });
  readonly otpSends = new Counter({ name: 'tsunagi_otp_sends_total', help: 'One-time code sends by channel and result', labelNames: ['channel', 'result'], registers: [this.registry] });
  readonly errors = new Counter({ name: 'tsunagi_errors_total', help: 'Errors by kind', labelNames: ['kind'], registers: [this.registry] });

  constructor(defaultMetrics = true) {
    if (defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'tsunagi_' });
  }
}

// oidc-provider's default route paths, for a bounded route label on requests it serves.
const PROVIDER_ROUTES: Array<[RegExp, string]> = [
  [/^\/\.well-known\/openid-configuration$/, 'discovery'],
  [/^\/jwks$/, 'jwks'],
  [/^\/auth(\/[^/]+)?$/, 'authorization'],
  [/^\/token\/introspection$/, 'introspection'],
  [/^\/token\/revocation$/, 'revocation'],
  [/^\/token$/, 'token'],
  [/^\/me$/, 'userinfo'],
  [/^\/session\/end(\/confirm|\/success)?$/, 'end_session'],
  [/^\/reg(\/[^/]+)?$/, 'registration'],
  [/^\/request$/, 'pushed_authorization_request'],
  [/^\/device(\/.*)?$/, 'device'],
];

export function routeLabel(path: string, matchedRoute: string | undefined): string {
  if (matchedRoute) return matchedRoute;
  for (const [re, label] of PROVIDER_ROUTES) if (re.test(path)) return label;
  return 'other';
}

/**
 * Who may read /metrics (route counts, error kinds, process details: reconnaissance for an attacker,
 * and a cheap request to repeat): with METRICS_TOKEN set, only a request bearing it; in production
 * without one, nobody (the route answers 404); in development and tests, anyone on the listener.
 */
export type MetricsAccess = { kind: 'open' } | { kind: 'off' } | { kind: 'bearer'; token: string };

export function metricsAccess(config: { nodeEnv: string; metricsToken: string | undefined }): MetricsAccess {
  if (config.metricsToken) return { kind: 'bearer', token: config.metricsToken };
  return config.nodeEnv === 'production' ? { kind: 'off' } : { kind: 'open' };
}

/** `Authorization: Bearer <token>`, compared in constant time (as digests, so lengths may differ). */
export function bearerMatches(authorization: string, token: string): boolean {
  const match = /^Bearer ([\x21-\x7e]+)$/i.exec(authorization);
  if (!match?.[1]) return false;
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(match[1]), digest(token));
}
