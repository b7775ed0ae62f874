// Test wiring for the example: a real Tsunagi (the root harness), the fake LINE Platform and the
// example backend, all on loopback.
import { randomBytes } from 'node:crypto';
import type { RunningServer } from '../../../src/server.js';
import { FakeLinePlatform } from '../../../test/fakes/line.js';
import { SmtpSink } from '../../../test/fakes/smtp-sink.js';
import { authorizationRequest, discover, signInWithEmail } from '../../../test/e2e/support.js';
import { Browser } from '../../../test/support/browserless.js';
import { startTestServer, uniqueEmail } from '../../../test/support/harness.js';
import * as oidc from 'openid-client';
import { loadLinkAppConfig, type LinkAppConfig } from '../src/config.js';
import { startLinkApp, type RunningLinkApp } from '../src/main.js';

export const CHANNEL_ID = '1657000001';
export const OTHER_CHANNEL_ID = '1657000999';

export interface World {
  tsunagi: RunningServer;
  sink: SmtpSink;
  line: FakeLinePlatform;
  notifySecret: string;
  close(): Promise<void>;
}

export async function startWorld(): Promise<World> {
  const sink = new SmtpSink();
  const line = new FakeLinePlatform();
  await line.start();
  const tsunagi = await startTestServer({ SMTP_URL: await sink.start() });
  return {
    tsunagi, sink, line, notifySecret: randomBytes(24).toString('base64url'),
    async close() {
      await tsunagi.close();
      await sink.close();
      await line.close();
    },
  };
}

/** The example's configuration as its operator would set it, pointing at the world's servers. */
export function exampleConfig(world: World, clientId: string, env: Record<string, string> = {}): LinkAppConfig {
  return loadLinkAppConfig({
    PORT: '0',
    LINE_CHANNEL_ID: CHANNEL_ID,
    LINE_API_BASE_URL: world.line.url,
    LINE_MESSAGING_ACCESS_TOKEN: world.line.messagingAccessToken,
    TSUNAGI_ISSUER: world.tsunagi.services.config.issuer,
    TSUNAGI_CLIENT_ID: clientId,
    DATABASE_URL: process.env.DATABASE_URL,
    NOTIFY_SECRET: world.notifySecret,
    ...env,
  });
}

export async function startExample(config: LinkAppConfig): Promise<RunningLinkApp> {
  return startLinkApp(config);
}

/** Signs a new (or existing) person in to Tsunagi by email code, with the given nonce, and returns the tokens. */
export async function signInToTsunagi(world: World, client: { id: string; redirectUri: string }, opts: { nonce: string; email?: string; resource?: string; browser?: Browser }) {
  const config = await discover(world.tsunagi, client.id, undefined, { token_endpoint_auth_method: 'none' });
  // max_age makes Tsunagi ask for a fresh sign-in when the session is older (and put auth_time in the ID token).
  const extra: Record<string, string> = { nonce: opts.nonce, max_age: '600', ...(opts.resource ? { resource: opts.resource } : {}) };
  const req = await authorizationRequest(config, client.redirectUri, extra);
  const email = opts.email ?? uniqueEmail('line');
  const { callback } = await signInWithEmail(opts.browser ?? new Browser(), world.tsunagi.services.config.issuer, req.url, client.redirectUri, email, world.sink);
  const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: opts.nonce },
    opts.resource ? { resource: opts.resource } : undefined);
  return { idToken: tokens.id_token as string, accessToken: tokens.access_token, sub: tokens.claims()?.sub as string, email };
}

export async function call(base: string, method: string, path: string, opts: { bearer?: string; json?: unknown; headers?: Record<string, string> } = {}) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(opts.bearer ? { authorization: `Bearer ${opts.bearer}` } : {}),
      ...(opts.json !== undefined ? { 'content-type': 'application/json' } : {}),
      ...opts.headers,
    },
    body: opts.json !== undefined ? JSON.stringify(opts.json) : undefined,
  });
  return { status: res.status, body: await res.json() as Record<string, unknown> };
}
