import { importJWK, SignJWT } from 'jose';
import { FakeLinePlatform } from '../../../test/fakes/line.js';
import { describeBackends } from '../../../test/support/harness.js';
import type { RunningLinkApp } from '../src/main.js';
import { CHANNEL_ID, OTHER_CHANNEL_ID, call, exampleConfig, signInToTsunagi, startExample, startWorld, type World } from './support.js';

// The reference backend of "method 1" against the fake LINE Platform and a real Tsunagi.
describe(`LINE mini-app backend: linking LINE users to Tsunagi accounts (${describeBackends()})`, () => {
  // Never fetched: the browserless sign-in stops at the redirect and hands the code over.
  const REDIRECT_URI = 'http://127.0.0.1:9/liff/callback';
  const RESOURCE = 'http://127.0.0.1:9/api';
  let world: World;
  let app: RunningLinkApp;
  let spa: { id: string; redirectUri: string };
  let otherSpa: { id: string; redirectUri: string };

  beforeAll(async () => {
    world = await startWorld();
    const addSpa = async (name: string) => {
      const added = await world.tsunagi.services.clients.add({
        client_name: name, redirect_uris: [REDIRECT_URI], grant_types: ['authorization_code', 'refresh_token'],
        token_endpoint_auth_method: 'none', first_party: true, require_auth_time: true, allowed_resources: [RESOURCE],
      });
      return { id: added.client_id as string, redirectUri: REDIRECT_URI };
    };
    spa = await addSpa('Mini app');
    otherSpa = await addSpa('Some other app');
    app = await startExample(exampleConfig(world, spa.id, { TSUNAGI_RESOURCE: RESOURCE }));
  });

  afterAll(async () => {
    await app?.close();
    await world?.close();
  });

  const newLineUser = (channelId = CHANNEL_ID) => {
    const userId = FakeLinePlatform.newUserId();
    return { userId, token: world.line.issueAccessToken({ userId, channelId, displayName: 'Hanako' }) };
  };
  const start = async (lineToken: string) => {
    const res = await call(app.url, 'POST', '/link/start', { bearer: lineToken });
    expect(res.status).toBe(200);
    expect(res.body.expires_in).toBe(300);
    return res.body.nonce as string;
  };
  const complete = (lineToken: string, json: unknown) => call(app.url, 'POST', '/link/complete', { bearer: lineToken, json });

  it('links a LINE user to a new Tsunagi account, then pushes to that LINE user only', async () => {
    const alice = newLineUser();
    const bob = newLineUser();
    const nonce = await start(alice.token);
    const signIn = await signInToTsunagi(world, spa, { nonce });
    const res = await complete(alice.token, { id_token: signIn.idToken });
    expect(res).toEqual({ status: 201, body: { linked: true, created: true, sub: signIn.sub } });
    expect(await app.store.lineUserOf(signIn.sub)).toBe(alice.userId);

    const pushed = await call(app.url, 'POST', '/notify', { json: { sub: signIn.sub, text: 'Thanks for your order' }, headers: { 'x-notify-secret': world.notifySecret } });
    expect(pushed).toEqual({ status: 200, body: { sent: true } });
    expect(world.line.pushesTo(alice.userId).map((p) => p.messages)).toEqual([[{ type: 'text', text: 'Thanks for your order' }]]);
    expect(world.line.pushesTo(bob.userId)).toEqual([]);
  });

  it('links an existing account, and linking the same pair again is an idempotent 200', async () => {
    const carol = newLineUser();
    const first = await signInToTsunagi(world, spa, { nonce: await start(carol.token) });
    expect((await complete(carol.token, { id_token: first.idToken })).status).toBe(201);
    // The same person signs in again (an existing account now) from the same LINE user.
    const again = await signInToTsunagi(world, spa, { nonce: await start(carol.token), email: first.email });
    expect(again.sub).toBe(first.sub);
    expect(await complete(carol.token, { id_token: again.idToken })).toEqual({ status: 200, body: { linked: true, created: false, sub: first.sub } });
  });

  it('answers 409 when the LINE user is linked to another account, and when the account is linked to another LINE user', async () => {
    const dave = newLineUser();
    const daveAccount = await signInToTsunagi(world, spa, { nonce: await start(dave.token) });
    expect((await complete(dave.token, { id_token: daveAccount.idToken })).status).toBe(201);

    // Same LINE user, another Tsunagi account.
    const other = await signInToTsunagi(world, spa, { nonce: await start(dave.token) });
    const lineTaken = await complete(dave.token, { id_token: other.idToken });
    expect(lineTaken.status).toBe(409);
    expect(lineTaken.body).toMatchObject({ error: 'line_user_already_linked', message: expect.stringContaining('already linked to another account') });
    expect(await app.store.lineUserOf(other.sub)).toBeUndefined();

    // Same Tsunagi account, another LINE user.
    const erin = newLineUser();
    const daveFromErin = await signInToTsunagi(world, spa, { nonce: await start(erin.token), email: daveAccount.email });
    const accountTaken = await complete(erin.token, { id_token: daveFromErin.idToken });
    expect(accountTaken.status).toBe(409);
    expect(accountTaken.body).toMatchObject({ error: 'account_already_linked', message: expect.stringContaining('another LINE account') });
    expect(await app.store.subOf(erin.userId)).toBeUndefined();
    expect(await app.store.lineUserOf(daveAccount.sub)).toBe(dave.userId);

    // Nothing changed on the refusal: the nonce is still good once Dave's link is gone.
    expect((await call(app.url, 'DELETE', '/link', { bearer: dave.token })).status).toBe(200);
    expect((await complete(erin.token, { id_token: daveFromErin.idToken })).status).toBe(201);
  });

  it('refuses a replayed nonce', async () => {
    const frank = newLineUser();
    const signIn = await signInToTsunagi(world, spa, { nonce: await start(frank.token) });
    expect((await complete(frank.token, { id_token: signIn.idToken })).status).toBe(201);
    const replay = await complete(frank.token, { id_token: signIn.idToken });
    expect(replay.status).toBe(400);
    expect(replay.body).toMatchObject({ error: 'invalid_nonce', message: expect.stringContaining('already used') });
  });

  it('refuses an ID token whose nonce was issued to another LINE user', async () => {
    const victim = newLineUser();
    const attacker = newLineUser();
    const signIn = await signInToTsunagi(world, spa, { nonce: await start(victim.token) });
    const res = await complete(attacker.token, { id_token: signIn.idToken });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ error: 'invalid_nonce', message: expect.stringContaining('another LINE user') });
    expect(await app.store.subOf(attacker.userId)).toBeUndefined();
    expect(await app.store.lineUserOf(signIn.sub)).toBeUndefined();
  });

  it('refuses an ID token without a nonce from /link/start', async () => {
    const grace = newLineUser();
    const signIn = await signInToTsunagi(world, spa, { nonce: 'made-up-by-the-client' });
    const res = await complete(grace.token, { id_token: signIn.idToken });
    expect(res).toMatchObject({ status: 400, body: { error: 'invalid_nonce' } });
  });

  it('refuses expired and revoked LINE tokens, tokens of another channel, and a missing token', async () => {
    const expired = newLineUser();
    world.line.expire(expired.token);
    expect(await call(app.url, 'POST', '/link/start', { bearer: expired.token }))
      .toMatchObject({ status: 401, body: { error: 'invalid_line_token', message: expect.stringContaining('access token expired') } });

    const revoked = newLineUser();
    world.line.revoke(revoked.token);
    expect(await call(app.url, 'POST', '/link/start', { bearer: revoked.token }))
      .toMatchObject({ status: 401, body: { error: 'invalid_line_token', message: expect.stringContaining('invalid access token') } });

    const foreign = newLineUser(OTHER_CHANNEL_ID);
    expect(await call(app.url, 'POST', '/link/start', { bearer: foreign.token }))
      .toMatchObject({ status: 401, body: { error: 'invalid_line_token', message: expect.stringContaining('another LINE channel') } });

    expect(await call(app.url, 'POST', '/link/start'))
      .toMatchObject({ status: 401, body: { error: 'invalid_line_token', message: expect.stringContaining('Authorization: Bearer') } });
  });

  it('refuses to complete when the LINE token died between start and complete (the LIFF app was closed)', async () => {
    const henry = newLineUser();
    const signIn = await signInToTsunagi(world, spa, { nonce: await start(henry.token) });
    world.line.revoke(henry.token);
    const res = await complete(henry.token, { id_token: signIn.idToken });
    expect(res).toMatchObject({ status: 401, body: { error: 'invalid_line_token' } });
    expect(await app.store.lineUserOf(signIn.sub)).toBeUndefined();
  });

  it('refuses an ID token issued to another client (wrong audience)', async () => {
    const ivy = newLineUser();
    const signIn = await signInToTsunagi(world, otherSpa, { nonce: await start(ivy.token) });
    const res = await complete(ivy.token, { id_token: signIn.idToken });
    expect(res).toMatchObject({ status: 401, body: { error: 'invalid_tsunagi_token', message: expect.stringContaining('another audience') } });
  });

  it("refuses an expired ID token signed with Tsunagi's own key", async () => {
    const jack = newLineUser();
    const nonce = await start(jack.token);
    const { jwks } = await world.tsunagi.services.keys.load();
    const jwk = jwks.keys.find((k) => k.alg === 'RS256');
    if (!jwk) throw new Error('Tsunagi has no RS256 key');
    const now = Math.floor(Date.now() / 1000);
    const expired = await new SignJWT({ nonce, auth_time: now - 120 })
      .setProtectedHeader({ alg: 'RS256', kid: jwk.kid })
      .setIssuer(world.tsunagi.services.config.issuer).setAudience(spa.id).setSubject('someone')
      .setIssuedAt(now - 120).setExpirationTime(now - 60)
      .sign(await importJWK(jwk, 'RS256'));
    const res = await complete(jack.token, { id_token: expired });
    expect(res).toMatchObject({ status: 401, body: { error: 'invalid_tsunagi_token', message: expect.stringContaining('expired') } });
  });

  it('refuses a sign-in older than MAX_AUTH_AGE_SECONDS', async () => {
    const strict = await startExample({ ...exampleConfig(world, spa.id), maxAuthAgeSeconds: 1 });
    try {
      const kate = newLineUser();
      const nonce = (await call(strict.url, 'POST', '/link/start', { bearer: kate.token })).body.nonce as string;
      const signIn = await signInToTsunagi(world, spa, { nonce });
      await new Promise((resolve) => setTimeout(resolve, 2100));
      const res = await call(strict.url, 'POST', '/link/complete', { bearer: kate.token, json: { id_token: signIn.idToken } });
      expect(res).toMatchObject({ status: 401, body: { error: 'stale_sign_in', message: expect.stringContaining('Sign in again') } });
    } finally {
      await strict.close();
    }
  });

  it('links with a JWT access token for the backend resource, once per token', async () => {
    const liam = newLineUser();
    const nonce = await start(liam.token);
    const signIn = await signInToTsunagi(world, spa, { nonce, resource: RESOURCE });
    const res = await complete(liam.token, { access_token: signIn.accessToken, nonce });
    expect(res).toEqual({ status: 201, body: { linked: true, created: true, sub: signIn.sub } });
    const replay = await complete(liam.token, { access_token: signIn.accessToken, nonce: await start(liam.token) });
    expect(replay).toMatchObject({ status: 400, body: { error: 'token_replayed' } });
    // An ID token is not an access token for the resource.
    const wrongKind = await complete(liam.token, { access_token: signIn.idToken, nonce: await start(liam.token) });
    expect(wrongKind).toMatchObject({ status: 401, body: { error: 'invalid_tsunagi_token' } });
  });

  it('unlinks, and answers 404 when there is nothing to unlink', async () => {
    const mia = newLineUser();
    const signIn = await signInToTsunagi(world, spa, { nonce: await start(mia.token) });
    expect((await complete(mia.token, { id_token: signIn.idToken })).status).toBe(201);
    expect(await call(app.url, 'DELETE', '/link', { bearer: mia.token })).toEqual({ status: 200, body: { unlinked: true } });
    expect(await app.store.lineUserOf(signIn.sub)).toBeUndefined();
    expect(await call(app.url, 'DELETE', '/link', { bearer: mia.token })).toMatchObject({ status: 404, body: { error: 'not_linked' } });
    expect(await call(app.url, 'POST', '/notify', { json: { sub: signIn.sub, text: 'hi' }, headers: { 'x-notify-secret': world.notifySecret } }))
      .toMatchObject({ status: 404, body: { error: 'not_linked' } });
  });

  it('protects /notify with the shared secret and validates its body', async () => {
    const before = world.line.pushes.length;
    expect(await call(app.url, 'POST', '/notify', { json: { sub: 'x', text: 'hi' } })).toMatchObject({ status: 401, body: { error: 'unauthorized' } });
    expect(await call(app.url, 'POST', '/notify', { json: { sub: 'x', text: 'hi' }, headers: { 'x-notify-secret': `${world.notifySecret}x` } }))
      .toMatchObject({ status: 401 });
    expect(await call(app.url, 'POST', '/notify', { json: { sub: 'x' }, headers: { 'x-notify-secret': world.notifySecret } }))
      .toMatchObject({ status: 400, body: { error: 'invalid_request' } });
    expect(world.line.pushes.length).toBe(before);
  });

  it('answers malformed requests with clear JSON errors', async () => {
    const noel = newLineUser();
    expect(await complete(noel.token, { nonsense: true })).toMatchObject({ status: 400, body: { error: 'invalid_request', message: expect.stringContaining('id_token') } });
    expect(await complete(noel.token, { id_token: 'not-a-jwt' })).toMatchObject({ status: 401, body: { error: 'invalid_tsunagi_token', message: expect.stringContaining('well-formed') } });
    const res = await fetch(`${app.url}/link/complete`, { method: 'POST', headers: { authorization: `Bearer ${noel.token}`, 'content-type': 'text/plain' }, body: 'x' });
    expect(res.status).toBe(415);
  });
});
