import * as oidc from 'openid-client';
import { SmtpSink } from '../fakes/smtp-sink.js';
import { Browser } from '../support/browserless.js';
import { eventually, TsunagiProcess } from '../support/faults.js';
import { freePort, uniqueEmail } from '../support/harness.js';
import { Haproxy } from '../support/scale-servers.js';
import { signInWithEmail } from './support.js';

// Three Tsunagi processes on one Postgres (and one Redis when REDIS_URL is set) behind HAProxy, which
// keeps a node in rotation while its /readyz answers 200. Relying parties keep refreshing tokens,
// reading userinfo and signing in silently with the browser's session while one node is killed
// (SIGKILL) and another is restarted (SIGTERM: it drains, then starts again on its port). They may
// meet a failed request, but its one retry succeeds; and no session, grant or refresh token is lost.

const DATABASE_URL = process.env.DATABASE_URL;
const describeWithPostgres = DATABASE_URL ? describe : describe.skip;
if (!DATABASE_URL) console.warn('DATABASE_URL not set: the several-nodes test did NOT run (nodes need a shared Postgres)');

const INITIAL_ACCESS_TOKEN = 'scale-out-initial-access-token-0123456789abc';
const USERS = 4;

interface Outcome { op: string; firstTry: boolean; retried: boolean; failed: string | undefined }

/** A person signed in at two relying parties: a web app (confidential) and an SPA (public, rotating refresh tokens). */
interface User {
  email: string;
  browser: Browser;
  sub: string;
  webRefresh: string;
  spaRefresh: string;
}

class RequestFailed extends Error {
  override name = 'RequestFailed';
}

describeWithPostgres('three nodes behind HAProxy: one killed, one restarted under load (real Postgres)', () => {
  const sink = new SmtpSink();
  const nodes = [new TsunagiProcess(), new TsunagiProcess(), new TsunagiProcess()];
  let haproxy: Haproxy;
  let issuer = '';
  const redirectUri = 'http://127.0.0.1:9/cb';
  let web: { id: string; secret: string };
  let spa: { id: string };
  let webConfig: oidc.Configuration;
  let spaConfig: oidc.Configuration;

  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await haproxy?.stop();
    await sink.close();
  });

  async function register(body: Record<string, unknown>): Promise<{ client_id: string; client_secret?: string }> {
    const res = await fetch(`${issuer}/reg`, {
      method: 'POST', headers: { authorization: `Bearer ${INITIAL_ACCESS_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ redirect_uris: [redirectUri], response_types: ['code'], grant_types: ['authorization_code', 'refresh_token'], ...body }),
    });
    expect(res.status).toBe(201);
    return await res.json() as { client_id: string; client_secret?: string };
  }

  /** POST /token; the parsed answer, or RequestFailed for what a relying party retries (no answer, 5xx). */
  async function token(form: Record<string, string>, clientSecret?: string): Promise<Record<string, string>> {
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    if (clientSecret) headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(web.id)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`;
    const res = await fetch(`${issuer}/token`, { method: 'POST', headers, body: new URLSearchParams(form).toString() }).catch((e: unknown) => { throw new RequestFailed(String(e)); });
    const text = await res.text().catch((e: unknown) => { throw new RequestFailed(String(e)); });
    if (res.status >= 500) throw new RequestFailed(`token: ${res.status} ${text.slice(0, 200)}`);
    const body = JSON.parse(text) as Record<string, string>;
    if (res.status !== 200) throw new Error(`token: ${res.status} ${text}`);
    return body;
  }

  async function userinfo(accessToken: string, sub: string): Promise<void> {
    const res = await fetch(`${issuer}/me`, { headers: { authorization: `Bearer ${accessToken}` } }).catch((e: unknown) => { throw new RequestFailed(String(e)); });
    const text = await res.text().catch((e: unknown) => { throw new RequestFailed(String(e)); });
    if (res.status >= 500) throw new RequestFailed(`userinfo: ${res.status} ${text.slice(0, 200)}`);
    if (res.status !== 200) throw new Error(`userinfo: ${res.status} ${text}`);
    expect((JSON.parse(text) as { sub: string }).sub).toBe(sub);
  }

  /** A silent sign-in with the browser's session (prompt=none), then the code exchanged: the whole round trip. */
  async function silentSignIn(user: User): Promise<void> {
    const verifier = oidc.randomPKCECodeVerifier();
    const url = oidc.buildAuthorizationUrl(webConfig, {
      redirect_uri: redirectUri, scope: 'openid email', prompt: 'none', state: oidc.randomState(),
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    const page = await user.browser.follow(url.href, {}, (u) => u.startsWith(redirectUri)).catch((e: unknown) => { throw new RequestFailed(String(e)); });
    if (page.res.status >= 500) throw new RequestFailed(`authorize: ${page.res.status} ${page.body.slice(0, 200)}`);
    const callback = new URL(page.url);
    if (!page.url.startsWith(redirectUri)) throw new Error(`authorize did not come back: ${page.res.status} ${page.url}`);
    const code = callback.searchParams.get('code');
    if (!code) throw new Error(`silent sign-in refused: ${callback.search}`);
    const tokens = await token({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier }, web.secret);
    await userinfo(tokens.access_token as string, user.sub);
  }

  async function refreshWeb(user: User): Promise<void> {
    const tokens = await token({ grant_type: 'refresh_token', refresh_token: user.webRefresh }, web.secret);
    if (tokens.refresh_token) user.webRefresh = tokens.refresh_token;
    await userinfo(tokens.access_token as string, user.sub);
  }

  async function refreshSpa(user: User): Promise<void> {
    // A cut request may have rotated the token already: the retry reuses the same one, within the reuse interval.
    const tokens = await token({ grant_type: 'refresh_token', refresh_token: user.spaRefresh, client_id: spa.id });
    user.spaRefresh = tokens.refresh_token as string;
    await userinfo(tokens.access_token as string, user.sub);
  }

  /** Runs an operation as a relying party does: on a failed request, once more, a second later. */
  async function withOneRetry(op: string, run: () => Promise<void>): Promise<Outcome> {
    try {
      await run();
      return { op, firstTry: true, retried: false, failed: undefined };
    } catch (first) {
      await new Promise((r) => setTimeout(r, 1000));
      try {
        await run();
        return { op, firstTry: false, retried: true, failed: first instanceof RequestFailed ? undefined : `not a retryable failure first: ${String(first)}` };
      } catch (second) {
        return { op, firstTry: false, retried: true, failed: `${String(first)} / then ${String(second)}` };
      }
    }
  }

  it('keeps every session, grant and refresh token; a failed request succeeds when retried once', async () => {
    const ports = await Promise.all(nodes.map(() => freePort()));
    haproxy = await new Haproxy(ports.map((port, i) => ({ name: `n${i + 1}`, port }))).start();
    issuer = haproxy.url;
    const env = {
      DATABASE_URL, REDIS_URL: process.env.REDIS_URL, SMTP_URL: await sink.start(), ISSUER: issuer, INITIAL_ACCESS_TOKEN,
      // One deployment: the nodes share their Redis key space, and trust HAProxy's X-Forwarded-For.
      REDIS_KEY_PREFIX: `tsunagi-nodes-${process.pid}-${Date.now().toString(36)}:`, TRUST_PROXY: '1', SHUTDOWN_DRAIN_SECONDS: '2',
    };
    await Promise.all(nodes.map((n, i) => n.start(env, ports[i])));
    for (const name of ['n1', 'n2', 'n3']) await haproxy.waitFor(name, 'UP');

    const webClient = await register({ client_name: 'Web app' });
    web = { id: webClient.client_id, secret: webClient.client_secret as string };
    spa = { id: (await register({ client_name: 'SPA', token_endpoint_auth_method: 'none' })).client_id };
    const discover = (id: string, secret?: string) => oidc.discovery(new URL(issuer), id, secret ? { client_secret: secret } : {}, secret ? oidc.ClientSecretBasic(secret) : oidc.None(), { execute: [oidc.allowInsecureRequests] });
    webConfig = await discover(web.id, web.secret);
    spaConfig = await discover(spa.id);

    // Each person signs in at the web app (offline_access) and at the SPA, with one browser session.
    const users: User[] = [];
    for (let i = 0; i < USERS; i++) {
      const browser = new Browser();
      const email = uniqueEmail(`node${i}`);
      const signIn = async (config: oidc.Configuration, scope: string) => {
        const verifier = oidc.randomPKCECodeVerifier();
        const state = oidc.randomState();
        const url = oidc.buildAuthorizationUrl(config, {
          redirect_uri: redirectUri, scope, prompt: 'consent', state,
          code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
        });
        const { callback } = await signInWithEmail(browser, issuer, url, redirectUri, email, sink, { consent: true });
        return oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state });
      };
      const webTokens = await signIn(webConfig, 'openid email offline_access');
      const spaTokens = await signIn(spaConfig, 'openid email offline_access');
      users.push({ email, browser, sub: webTokens.claims()?.sub as string, webRefresh: webTokens.refresh_token as string, spaRefresh: spaTokens.refresh_token as string });
    }

    // The load: every person's relying parties, one operation after another, until told to stop.
    const outcomes: Outcome[] = [];
    let loading = true;
    const ops: Array<[string, (u: User) => Promise<void>]> = [['refresh web', refreshWeb], ['refresh spa', refreshSpa], ['silent sign-in', silentSignIn]];
    const loops = users.map(async (user, i) => {
      for (let n = i; loading; n++) {
        const [name, run] = ops[n % ops.length] as [string, (u: User) => Promise<void>];
        outcomes.push(await withOneRetry(name, () => run(user)));
      }
    });
    const moreOutcomes = async (count: number) => {
      const target = outcomes.length + count;
      await eventually(async () => (outcomes.length >= target ? true : undefined), 120_000, `${count} more operations`);
    };

    await moreOutcomes(24);
    // A node dies without warning: its requests in flight are cut, HAProxy's checks take it out.
    nodes[0]?.signal('SIGKILL');
    await haproxy.waitFor('n1', 'DOWN');
    await moreOutcomes(24);

    // Another is restarted: it drains (readyz 503, in-flight requests finish), exits 0, starts again.
    const restarting = nodes[1] as TsunagiProcess;
    restarting.signal('SIGTERM');
    expect((await restarting.exited).code).toBe(0);
    await haproxy.waitFor('n2', 'DOWN');
    await moreOutcomes(12);
    await restarting.start(env, ports[1]);
    await haproxy.waitFor('n2', 'UP');
    await moreOutcomes(24);
    loading = false;
    await Promise.all(loops);

    const failed = outcomes.filter((o) => o.failed);
    const retried = outcomes.filter((o) => o.retried);
    console.info(`several nodes: ${outcomes.length} operations, ${retried.length} retried once (${[...new Set(retried.map((o) => o.op))].join(', ') || 'none'}), ${failed.length} failed`);
    expect(failed).toEqual([]);
    expect(outcomes.length).toBeGreaterThanOrEqual(84);

    // Nothing was lost: every session still signs in silently, every refresh token still refreshes,
    // on whichever nodes now serve (n2 restarted, n3), including the one that never stopped.
    for (const user of users) {
      await silentSignIn(user);
      await refreshWeb(user);
      await refreshSpa(user);
    }
    expect(await haproxy.status()).toMatchObject({ n1: 'DOWN', n2: 'UP', n3: 'UP' });
  }, 420_000);
});
