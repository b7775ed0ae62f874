import { randomUUID } from 'node:crypto';
import { decodeProtectedHeader, decodeJwt } from 'jose';
import { UpstreamLoginStore } from '../../src/accounts/upstream-login-store.js';
import type { Database } from '../../src/db/database.js';
import { UpstreamError, UpstreamProviders, type UpstreamErrorReason } from '../../src/upstream/index.js';
import { BrowserCookieJar } from '../support/browser-cookie-jar.js';
import { FakeApple, readAutoPostForm } from '../fakes/apple.js';
import { FakeGoogle } from '../fakes/google.js';
import { describeBackends, openTestDatabase, testConfig } from '../support/harness.js';

const REDIRECT = 'http://127.0.0.1:1/interaction/upstream/callback';

let db: Database;
let google: FakeGoogle;
let apple: FakeApple;
let upstream: UpstreamProviders;
let logins: UpstreamLoginStore;
// One browser begins and completes every round trip here; binding to the browser is tested in
// upstream-browser-binding.test.ts and the federation e2e tests.
const browser = new BrowserCookieJar();

function providersFor(env: Record<string, string>, extra: Partial<ConstructorParameters<typeof UpstreamProviders>[0]> = {}): UpstreamProviders {
  return new UpstreamProviders({ config: testConfig(env).upstream, logins, jwksCooldownMs: 0, ...extra });
}

beforeAll(async () => {
  db = await openTestDatabase();
  logins = new UpstreamLoginStore(db.pool);
  google = await new FakeGoogle().start();
  apple = await new FakeApple().start();
  // A deadline no loaded machine reaches: only the test of the deadline itself uses a short one, against
  // a token endpoint that never answers (a short deadline here turned a bad signature into `timeout`).
  upstream = providersFor({ ...google.env(), ...apple.env(), UPSTREAM_TIMEOUT_MS: '60000' });
});
afterAll(async () => {
  await google.close();
  await apple.close();
  await db.close();
});

/** Sends the "browser" to Google and brings back the callback query, as the redirect carries it. */
async function googleRoundTrip(options: { loginHint?: string; interactionUid?: string } = {}) {
  const interactionUid = options.interactionUid ?? randomUUID();
  const { authorizationUrl } = await upstream.begin({ browser, provider: 'google', interactionUid, redirectUri: REDIRECT, purpose: 'login', loginHint: options.loginHint });
  const res = await fetch(authorizationUrl, { redirect: 'manual' });
  expect(res.status).toBe(302);
  const back = new URL(res.headers.get('location') as string);
  expect(`${back.origin}${back.pathname}`).toBe(REDIRECT);
  return { interactionUid, params: Object.fromEntries(back.searchParams) };
}

/** Apple answers with a form that posts back to Tsunagi; read its fields as the POST body. */
async function appleRoundTrip(client = upstream) {
  const interactionUid = randomUUID();
  const { authorizationUrl } = await client.begin({ browser, provider: 'apple', interactionUid, redirectUri: REDIRECT, purpose: 'login' });
  const res = await fetch(authorizationUrl);
  expect(res.status).toBe(200);
  const form = readAutoPostForm(await res.text());
  expect(form.action).toBe(REDIRECT);
  return { interactionUid, params: form.fields };
}

async function reasonOf(p: Promise<unknown>): Promise<UpstreamErrorReason> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!(err instanceof UpstreamError)) throw new Error(`expected an UpstreamError, got ${String(err)}`);
  return err.reason;
}

describe(`Google upstream against the emulator (${describeBackends()})`, () => {
  it('signs in with code + PKCE S256 + state + nonce and returns the identity', async () => {
    google.nextUser({ sub: 'g-1001', email: 'hanako@gmail.com', email_verified: true, name: 'Hanako Sato', given_name: 'Hanako', family_name: 'Sato' });
    const { interactionUid, params } = await googleRoundTrip({ loginHint: 'hanako@gmail.com' });
    const { pending, identity } = await upstream.complete({ browser, provider: 'google', params, redirectUri: REDIRECT });
    expect(pending).toMatchObject({ interactionUid, provider: 'google', purpose: 'login' });
    expect(identity).toEqual({
      provider: 'google', issuer: google.issuer, subject: 'g-1001', email: 'hanako@gmail.com', emailVerified: true,
      emailTrustedForRegistration: true, isPrivateRelay: false, name: 'Hanako Sato', givenName: 'Hanako', familyName: 'Sato',
    });
    const authorize = google.authorizeRequests.at(-1)?.query ?? {};
    expect(authorize).toMatchObject({ response_type: 'code', code_challenge_method: 'S256', login_hint: 'hanako@gmail.com', scope: 'openid email profile' });
    expect(authorize.nonce).toMatch(/^[\w-]{43}$/);
    expect(authorize.state).toMatch(/^[\w-]{43}$/);
    const token = google.tokenRequests.at(-1);
    expect(token?.form.code_verifier).toMatch(/^[\w-]{64}$/);
    expect(token?.authorization).toMatch(/^Basic /); // client_secret_basic, the secret never in the body
    expect(token?.form.client_secret).toBeUndefined();
  });

  it('trusts a verified email for registration only for gmail.com or a Workspace domain', async () => {
    const cases = [
      { user: { email: 'a@gmail.com', email_verified: true }, trusted: true },
      { user: { email: 'b@corp.example', email_verified: true, hd: 'corp.example' }, trusted: true },
      { user: { email: 'c@yahoo.example', email_verified: true }, trusted: false },
      { user: { email: 'd@gmail.com', email_verified: false }, trusted: false },
      { user: { email: 'e@gmail.com', email_verified: 'true' as const }, trusted: true },
      { user: { email: 'f@gmail.com', email_verified: 'false' as const }, trusted: false },
    ];
    for (const c of cases) {
      google.nextUser({ sub: randomUUID(), ...c.user });
      const { params } = await googleRoundTrip();
      const { identity } = await upstream.complete({ browser, provider: 'google', params });
      expect({ email: identity.email, trusted: identity.emailTrustedForRegistration }).toEqual({ email: c.user.email, trusted: c.trusted });
      expect(identity.emailVerified).toBe(c.user.email_verified === true || c.user.email_verified === 'true');
    }
  });

  it('picks the user by login_hint when none is queued', async () => {
    google.addUser({ sub: 'g-hinted', email: 'hinted@gmail.com' });
    const { params } = await googleRoundTrip({ loginHint: 'g-hinted' });
    expect((await upstream.complete({ browser, provider: 'google', params })).identity.subject).toBe('g-hinted');
  });

  it('refuses a replayed callback, after it worked once', async () => {
    google.nextUser({ sub: randomUUID(), email: 'r@gmail.com' });
    const { params } = await googleRoundTrip();
    await upstream.complete({ browser, provider: 'google', params });
    expect(await reasonOf(upstream.complete({ browser, provider: 'google', params }))).toBe('replayed');
  });

  it('refuses a callback with an unknown, missing or repeated state, or for the other provider', async () => {
    google.nextUser({ sub: randomUUID(), email: 's@gmail.com' });
    const { params } = await googleRoundTrip();
    expect(await reasonOf(upstream.complete({ browser, provider: 'google', params: { ...params, state: 'forged' } }))).toBe('bad_state');
    expect(await reasonOf(upstream.complete({ browser, provider: 'google', params: { code: params.code } }))).toBe('bad_state');
    expect(await reasonOf(upstream.complete({ browser, provider: 'google', params: { ...params, state: [params.state, 'x'] } }))).toBe('bad_state');
    const err = await upstream.complete({ browser, provider: 'apple', params }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as UpstreamError).reason).toBe('bad_state');
    // The state is burnt by the wrong-provider attempt: no second chance at the right endpoint.
    expect(await reasonOf(upstream.complete({ browser, provider: 'google', params }))).toBe('replayed');
  });

  it('refuses a callback at another redirect URI', async () => {
    google.nextUser({ sub: randomUUID(), email: 'u@gmail.com' });
    const { params } = await googleRoundTrip();
    expect(await reasonOf(upstream.complete({ browser, provider: 'google', params, redirectUri: 'http://127.0.0.1:2/other' }))).toBe('bad_state');
  });

  it('says access_denied when the person cancels, naming the interaction to return to', async () => {
    google.failNextAuthorize.push('access_denied');
    const { interactionUid, params } = await googleRoundTrip();
    expect(params.error).toBe('access_denied');
    const err = await upstream.complete({ browser, provider: 'google', params }).catch((e: unknown) => e) as UpstreamError;
    expect(err.reason).toBe('access_denied');
    expect(err.pending?.interactionUid).toBe(interactionUid);
  });

  it('says unavailable on a 5xx and timeout when the token endpoint is slow', async () => {
    google.nextUser({ sub: randomUUID(), email: 'v@gmail.com' });
    google.failNextToken.push({ status: 503 });
    expect(await reasonOf(upstream.complete({ browser, provider: 'google', ...(await googleRoundTrip()) }))).toBe('unavailable');
    // The token endpoint never answers, so only the deadline can end the exchange.
    const impatient = providersFor({ ...google.env(), UPSTREAM_TIMEOUT_MS: '5000' });
    await impatient.begin({ browser, provider: 'google', interactionUid: randomUUID(), redirectUri: REDIRECT, purpose: 'login' }); // discovery, outside the deadline under test
    google.nextUser({ sub: randomUUID(), email: 'w@gmail.com' });
    google.failNextToken.push('hang');
    expect(await reasonOf(impatient.complete({ browser, provider: 'google', ...(await googleRoundTrip()) }))).toBe('timeout');
  });

  it('says token_exchange_failed when the token endpoint refuses the code', async () => {
    google.nextUser({ sub: randomUUID(), email: 'x@gmail.com' });
    google.failNextToken.push({ status: 400, error: 'invalid_grant' });
    expect(await reasonOf(upstream.complete({ browser, provider: 'google', ...(await googleRoundTrip()) }))).toBe('token_exchange_failed');
  });

  it('refuses a client with the wrong secret (the emulator checks client authentication)', async () => {
    const wrong = providersFor({ ...google.env(), GOOGLE_CLIENT_SECRET: 'not-the-secret' });
    google.nextUser({ sub: randomUUID(), email: 'y@gmail.com' });
    const { authorizationUrl } = await wrong.begin({ browser, provider: 'google', interactionUid: randomUUID(), redirectUri: REDIRECT, purpose: 'login' });
    const back = new URL((await fetch(authorizationUrl, { redirect: 'manual' })).headers.get('location') as string);
    expect(await reasonOf(wrong.complete({ browser, provider: 'google', params: Object.fromEntries(back.searchParams) }))).toBe('token_exchange_failed');
  });

  const tampered: Array<[string, Parameters<FakeGoogle['tamperNextIdToken']['push']>[0], UpstreamErrorReason]> = [
    ['another audience', { aud: 'someone-else.apps.googleusercontent.com' }, 'wrong_audience'],
    ['an azp of another client', { azp: 'someone-else.apps.googleusercontent.com' }, 'wrong_audience'],
    ['another issuer', { iss: 'https://evil.example' }, 'wrong_issuer'],
    ['another nonce', { nonce: 'not-the-nonce' }, 'wrong_nonce'],
    ['no nonce', { nonce: null }, 'wrong_nonce'],
    ['an expired token', { shiftSeconds: -7200 }, 'expired'],
    ['a token issued in the future', { shiftSeconds: 600 }, 'invalid_id_token'],
    ['a bad signature', { badSignature: true }, 'bad_signature'],
    ['alg none', { algNone: true }, 'bad_signature'],
  ];
  it.each(tampered)('refuses an ID token with %s', async (_what, tamper, reason) => {
    google.nextUser({ sub: randomUUID(), email: 'z@gmail.com' });
    google.tamperNextIdToken.push(tamper);
    expect(await reasonOf(upstream.complete({ browser, provider: 'google', ...(await googleRoundTrip()) }))).toBe(reason);
  });

  it('refuses an HS256 token keyed with the client secret', async () => {
    google.nextUser({ sub: randomUUID(), email: 'h@gmail.com' });
    google.tamperNextIdToken.push({ hmacWithSecret: google.clientSecret });
    expect(await reasonOf(upstream.complete({ browser, provider: 'google', ...(await googleRoundTrip()) }))).toBe('bad_signature');
  });

  it('accepts an ID token up to 60 s past exp (clock skew), not beyond', async () => {
    google.nextUser({ sub: randomUUID(), email: 'skew@gmail.com' });
    google.tamperNextIdToken.push({ claims: { exp: Math.floor(Date.now() / 1000) - 30 } });
    await expect(upstream.complete({ browser, provider: 'google', ...(await googleRoundTrip()) })).resolves.toBeDefined();
    google.nextUser({ sub: randomUUID(), email: 'skew2@gmail.com' });
    google.tamperNextIdToken.push({ claims: { exp: Math.floor(Date.now() / 1000) - 90 } });
    expect(await reasonOf(upstream.complete({ browser, provider: 'google', ...(await googleRoundTrip()) }))).toBe('expired');
  });

  it('downloads the key set again on an unknown kid (a rotation), and only once per cooldown', async () => {
    // jose's cooldown runs on the wall clock: waited out once. It must stay longer than the three
    // sign-ins after it take on a loaded machine (2 s was not: a fourth download slipped in).
    const cooldownMs = 8000;
    const withCooldown = providersFor(google.env(), { jwksCooldownMs: cooldownMs });
    const signIn = async () => {
      google.nextUser({ sub: randomUUID(), email: 'rot@gmail.com' });
      const { authorizationUrl } = await withCooldown.begin({ browser, provider: 'google', interactionUid: randomUUID(), redirectUri: REDIRECT, purpose: 'login' });
      const back = new URL((await fetch(authorizationUrl, { redirect: 'manual' })).headers.get('location') as string);
      return withCooldown.complete({ browser, provider: 'google', params: Object.fromEntries(back.searchParams) });
    };
    await signIn(); // first key set download
    await new Promise((r) => setTimeout(r, cooldownMs + 100));
    const before = google.jwksRequests.length;
    const newKid = await google.rotateKeys(true);
    const after = await signIn();
    expect(after.identity.email).toBe('rot@gmail.com');
    expect(google.jwksRequests.length).toBe(before + 1);
    expect(google.currentKid).toBe(newKid);
    // A token under a kid nobody publishes: no download storm, just a refusal.
    google.tamperNextIdToken.push({ unknownKid: true });
    expect(await reasonOf(signIn())).toBe('bad_signature');
    google.tamperNextIdToken.push({ unknownKid: true });
    expect(await reasonOf(signIn())).toBe('bad_signature');
    expect(google.jwksRequests.length).toBe(before + 1);
  });

  it('says unavailable when discovery cannot be read, and leaves no pending login', async () => {
    const down = providersFor({ GOOGLE_CLIENT_ID: 'x', GOOGLE_CLIENT_SECRET: 'y', GOOGLE_ISSUER: 'http://127.0.0.1:1' });
    const interactionUid = randomUUID();
    expect(await reasonOf(down.begin({ browser, provider: 'google', interactionUid, redirectUri: REDIRECT, purpose: 'login' }))).toBe('unavailable');
    const { rows } = await db.pool.query('SELECT 1 FROM upstream_logins WHERE interaction_uid = $1', [interactionUid]);
    expect(rows).toHaveLength(0);
  });

  it('is off when not configured', async () => {
    const none = providersFor({});
    expect(none.enabledProviders()).toEqual([]);
    expect(await reasonOf(none.begin({ browser, provider: 'google', interactionUid: randomUUID(), redirectUri: REDIRECT, purpose: 'login' }))).toBe('not_configured');
  });
});

describe(`Apple upstream against the emulator (${describeBackends()})`, () => {
  it('posts back with form_post, reads the name from `user` on the first authorization only', async () => {
    const sub = `001234.${randomUUID().replace(/-/g, '')}.0123`;
    apple.nextUser({ sub, email: 'taro@icloud.example', email_verified: 'true', is_private_email: 'false', name: 'Taro Yamada' });
    const first = await appleRoundTrip();
    expect(JSON.parse(first.params.user as string)).toEqual({ name: { firstName: 'Taro', lastName: 'Yamada' }, email: 'taro@icloud.example' });
    const { pending, identity } = await upstream.complete({ browser, provider: 'apple', params: first.params, redirectUri: REDIRECT });
    expect(pending.interactionUid).toBe(first.interactionUid);
    expect(identity).toMatchObject({
      provider: 'apple', issuer: apple.issuer, subject: sub, email: 'taro@icloud.example', emailVerified: true, emailTrustedForRegistration: true,
      isPrivateRelay: false, name: 'Taro Yamada', givenName: 'Taro', familyName: 'Yamada',
    });
    expect(identity.refreshToken && apple.issuedRefreshTokens.has(identity.refreshToken)).toBe(true);
    const authorize = apple.authorizeRequests.at(-1)?.query ?? {};
    expect(authorize).toMatchObject({ response_mode: 'form_post', scope: 'name email', response_type: 'code', code_challenge_method: 'S256' });

    apple.nextUser({ sub, email: 'taro@icloud.example', email_verified: 'true' });
    const second = await appleRoundTrip();
    expect(second.params.user).toBeUndefined();
    const again = await upstream.complete({ browser, provider: 'apple', params: second.params });
    expect(again.identity.name).toBeUndefined();
    expect(again.identity.subject).toBe(sub);
  });

  it('holds a form_post answer without deciding anything, and completes it only in the browser that began it', async () => {
    const sub = `001.${randomUUID()}`;
    apple.nextUser({ sub, email: 'hold@icloud.example', email_verified: 'true', is_private_email: 'false' });
    const began = new BrowserCookieJar();
    const { authorizationUrl } = await upstream.begin({ browser: began, provider: 'apple', interactionUid: randomUUID(), redirectUri: REDIRECT, purpose: 'login' });
    const [cookieName] = [...began.cookies.keys()];
    expect(began.cookies.get(cookieName as string)?.maxAgeSeconds).toBe(600);
    const { fields } = readAutoPostForm(await (await fetch(authorizationUrl)).text());
    const tokenCalls = apple.tokenRequests.length;

    // The cross-site POST: held under a fresh reference; no code exchanged, nothing consumed.
    const { reference } = await upstream.holdFormPostAnswer({ provider: 'apple', params: fields });
    expect(apple.tokenRequests.length).toBe(tokenCalls);
    expect(await reasonOf(upstream.takeHeldAnswer({ provider: 'google', reference }))).toBe('bad_state');
    const params = await upstream.takeHeldAnswer({ provider: 'apple', reference });
    expect(await reasonOf(upstream.takeHeldAnswer({ provider: 'apple', reference }))).toBe('bad_state');

    // Another browser (no cookie, or another attempt's): refused, the code still not exchanged.
    const other = new BrowserCookieJar();
    expect(await reasonOf(upstream.complete({ browser: other, provider: 'apple', params, redirectUri: REDIRECT }))).toBe('other_browser');
    other.set(cookieName as string, 'not-the-value', 600);
    const refused = await upstream.complete({ browser: other, provider: 'apple', params, redirectUri: REDIRECT }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ reason: 'other_browser', purpose: 'login', pending: undefined });
    expect(apple.tokenRequests.length).toBe(tokenCalls);

    // The browser that began it: completes, and its cookie is spent.
    const { identity } = await upstream.complete({ browser: began, provider: 'apple', params, redirectUri: REDIRECT });
    expect(identity.subject).toBe(sub);
    expect(began.cookies.size).toBe(0);
    expect(await reasonOf(upstream.holdFormPostAnswer({ provider: 'apple', params: fields }))).toBe('replayed');
  });

  it('recognises private relay addresses by flag (string or boolean) and by domain; never trusts them for registration', async () => {
    const cases = [
      { email: 'abc@privaterelay.appleid.com', is_private_email: 'true' as const },
      { email: 'abc2@privaterelay.appleid.com', is_private_email: true },
      { email: 'abc3@privaterelay.appleid.com' },
      { email: 'relay@custom.example', is_private_email: 'true' as const },
    ];
    for (const c of cases) {
      apple.nextUser({ sub: randomUUID(), email_verified: true, ...c });
      const { identity } = await upstream.complete({ browser, provider: 'apple', params: (await appleRoundTrip()).params });
      expect({ email: identity.email, relay: identity.isPrivateRelay, trusted: identity.emailTrustedForRegistration, verified: identity.emailVerified })
        .toEqual({ email: c.email, relay: true, trusted: false, verified: true });
    }
    apple.nextUser({ sub: randomUUID(), email: 'unverified@icloud.example', email_verified: 'false', is_private_email: 'false' });
    const { identity } = await upstream.complete({ browser, provider: 'apple', params: (await appleRoundTrip()).params });
    expect(identity).toMatchObject({ emailVerified: false, emailTrustedForRegistration: false, isPrivateRelay: false });
  });

  it('authenticates with an ES256 client_secret JWT that the emulator verifies, cached between requests', async () => {
    const seenBefore = apple.clientSecretsSeen.length;
    for (let i = 0; i < 2; i++) {
      apple.nextUser({ sub: randomUUID(), email: `cs${i}@icloud.example` });
      await upstream.complete({ browser, provider: 'apple', params: (await appleRoundTrip()).params });
    }
    const seen = apple.clientSecretsSeen.slice(seenBefore);
    expect(seen).toHaveLength(2);
    const [a, b] = seen as [typeof seen[0], typeof seen[0]];
    expect(a.header).toMatchObject({ alg: 'ES256', kid: apple.keyId });
    expect(a.claims).toMatchObject({ iss: apple.teamId, sub: apple.clientId, aud: apple.issuer });
    expect((a.claims.exp as number) - (a.claims.iat as number)).toBeLessThanOrEqual(15_777_000);
    expect(b.claims.iat).toBe(a.claims.iat); // the same cached secret
    const tokenSecrets = apple.tokenRequests.slice(-2).map((r) => r.form.client_secret);
    expect(tokenSecrets[0]).toBe(tokenSecrets[1]);
  });

  it('renews the client_secret before it expires', async () => {
    let now = new Date('2030-01-01T00:00:00Z');
    const client = providersFor(apple.env(), { clock: () => now, appleClientSecretTiming: { lifetimeSeconds: 7200, renewBeforeSeconds: 600 } });
    const secret = () => (client.get('apple') as unknown as { clientSecret: { current(): Promise<string> } }).clientSecret.current();
    const first = await secret();
    now = new Date(now.getTime() + 6000 * 1000); // 1200 s left: still used
    expect(await secret()).toBe(first);
    now = new Date(now.getTime() + 700 * 1000); // 500 s left: renewed
    const renewed = await secret();
    expect(renewed).not.toBe(first);
    expect(decodeJwt(renewed).iat).toBe(Math.floor(now.getTime() / 1000));
    expect(decodeProtectedHeader(renewed).kid).toBe(apple.keyId);
  });

  it('is refused by Apple when the client_secret is signed with another key', async () => {
    const other = new FakeApple();
    const wrongKey = providersFor({ ...apple.env(), APPLE_PRIVATE_KEY: other.privateKeyPem });
    apple.nextUser({ sub: randomUUID(), email: 'k@icloud.example' });
    expect(await reasonOf(wrongKey.complete({ browser, provider: 'apple', params: (await appleRoundTrip(wrongKey)).params }))).toBe('token_exchange_failed');
  });

  it('says access_denied when the person cancels at Apple (user_cancelled_authorize)', async () => {
    apple.failNextAuthorize.push('user_cancelled_authorize');
    const { params } = await appleRoundTrip();
    expect(params.code).toBeUndefined();
    expect(await reasonOf(upstream.complete({ browser, provider: 'apple', params }))).toBe('access_denied');
  });

  it('refuses an Apple ID token with a wrong nonce, but accepts none when Apple says nonce_supported: false', async () => {
    apple.nextUser({ sub: randomUUID(), email: 'n@icloud.example' });
    apple.tamperNextIdToken.push({ nonce: 'other' });
    expect(await reasonOf(upstream.complete({ browser, provider: 'apple', params: (await appleRoundTrip()).params }))).toBe('wrong_nonce');
    apple.nextUser({ sub: randomUUID(), email: 'n2@icloud.example' });
    apple.tamperNextIdToken.push({ nonce: null, claims: { nonce_supported: true } });
    expect(await reasonOf(upstream.complete({ browser, provider: 'apple', params: (await appleRoundTrip()).params }))).toBe('wrong_nonce');
    apple.nextUser({ sub: randomUUID(), email: 'n3@icloud.example' });
    apple.nonceUnsupportedNext = 1;
    const { identity } = await upstream.complete({ browser, provider: 'apple', params: (await appleRoundTrip()).params });
    expect(identity.email).toBe('n3@icloud.example');
  });

  it('refuses an Apple ID token for another audience or with a bad signature', async () => {
    apple.nextUser({ sub: randomUUID(), email: 'aud@icloud.example' });
    apple.tamperNextIdToken.push({ aud: 'com.example.other' });
    expect(await reasonOf(upstream.complete({ browser, provider: 'apple', params: (await appleRoundTrip()).params }))).toBe('wrong_audience');
    apple.nextUser({ sub: randomUUID(), email: 'sig@icloud.example' });
    apple.tamperNextIdToken.push({ badSignature: true });
    expect(await reasonOf(upstream.complete({ browser, provider: 'apple', params: (await appleRoundTrip()).params }))).toBe('bad_signature');
  });

  it('sends no PKCE when Apple does not advertise it, and still signs in', async () => {
    apple.advertisePkce = false;
    try {
      const client = providersFor(apple.env());
      apple.nextUser({ sub: randomUUID(), email: 'nopkce@icloud.example' });
      const { identity } = await client.complete({ browser, provider: 'apple', params: (await appleRoundTrip(client)).params });
      expect(identity.email).toBe('nopkce@icloud.example');
      expect(apple.authorizeRequests.at(-1)?.query.code_challenge).toBeUndefined();
      expect(apple.tokenRequests.at(-1)?.form.code_verifier).toBeUndefined();
    } finally {
      apple.advertisePkce = true;
    }
  });

  it('revokes a refresh token at the revocation endpoint with a client_secret', async () => {
    apple.nextUser({ sub: randomUUID(), email: 'rev@icloud.example' });
    const { identity } = await upstream.complete({ browser, provider: 'apple', params: (await appleRoundTrip()).params });
    await upstream.revokeAppleToken(identity.refreshToken as string);
    expect(apple.revokedTokens).toContain(identity.refreshToken);
    const revoke = apple.requestsTo('/auth/revoke').at(-1);
    expect(revoke?.form).toMatchObject({ client_id: apple.clientId, token_type_hint: 'refresh_token' });
    apple.failNextRevoke.push(400);
    expect(await reasonOf(upstream.revokeAppleToken('whatever'))).toBe('revoke_failed');
    apple.failNextRevoke.push(503);
    expect(await reasonOf(upstream.revokeAppleToken('whatever'))).toBe('unavailable');
  });
});
