import { FakeLinePlatform } from '../../../test/fakes/line.js';
import { Browser } from '../../../test/support/browserless.js';
import { createAccount, decide, linkIn, openApproval } from '../../../test/support/ciba-approval.js';
import { describeBackends, uniqueEmail } from '../../../test/support/harness.js';
import type { RunningLinkApp } from '../src/main.js';
import { CHANNEL_ID, call, exampleConfig, startExample, startWorld, type World } from './support.js';

const CIBA_GRANT = 'urn:openid:params:grant-type:ciba';

// Method 2 (OpenID CIBA) through the example backend: the mini-app sends the typed address, shows
// the binding message and polls; the person approves at Tsunagi; the backend links.
describe(`LINE mini-app backend, method 2: link by email or phone with CIBA (${describeBackends()})`, () => {
  let world: World;
  let app: RunningLinkApp;

  beforeAll(async () => {
    world = await startWorld();
    const spa = await world.tsunagi.services.clients.add({
      client_name: 'Mini app page', redirect_uris: ['http://127.0.0.1:9/liff/callback'], token_endpoint_auth_method: 'none', first_party: true,
    });
    const backend = await world.tsunagi.services.clients.add({
      client_name: 'Example Shop mini app', grant_types: [CIBA_GRANT], response_types: [], redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic', backchannel_token_delivery_mode: 'poll', require_auth_time: true,
    });
    app = await startExample(exampleConfig(world, spa.client_id as string, {
      TSUNAGI_CIBA_CLIENT_ID: backend.client_id as string, TSUNAGI_CIBA_CLIENT_SECRET: backend.client_secret as string,
    }));
  });

  afterAll(async () => {
    await app?.close();
    await world?.close();
  });

  const newLineUser = () => {
    const userId = FakeLinePlatform.newUserId();
    return { userId, token: world.line.issueAccessToken({ userId, channelId: CHANNEL_ID, displayName: 'Hanako' }) };
  };
  const start = async (lineToken: string, loginHint: string) => {
    const res = await call(app.url, 'POST', '/ciba/start', { bearer: lineToken, json: { login_hint: loginHint } });
    expect(res.status).toBe(200);
    expect(res.body.binding_message).toMatch(/^[BCDFGHJKMNPQRSTVWXZ]{4}-\d{4}$/);
    return res.body as { request_id: string; binding_message: string; expires_in: number; interval: number };
  };
  const poll = (lineToken: string, requestId: string) => call(app.url, 'POST', '/ciba/poll', { bearer: lineToken, json: { request_id: requestId } });
  /** The person gets the mail, checks the binding message, signs in and decides. */
  const personDecides = async (email: string, expectedMessage: string, decision: 'approve' | 'refuse') => {
    const mail = await world.sink.nextMailTo(email);
    expect(mail.text).toContain(expectedMessage);
    const link = linkIn(mail.text);
    const browser = new Browser();
    const page = await openApproval(world.tsunagi, world.sink, browser, link, email);
    expect(page.body).toContain(expectedMessage);
    return decide(browser, link, page, decision);
  };

  it('links the LINE user to the account the person approved from, and pushes to them', async () => {
    const email = uniqueEmail('m2');
    const account = await createAccount(world.tsunagi, { email });
    const alice = newLineUser();
    const started = await start(alice.token, email);
    expect(started.interval).toBe(5);
    await personDecides(email, started.binding_message, 'approve');
    const linked = await poll(alice.token, started.request_id);
    expect(linked).toEqual({ status: 201, body: { linked: true, created: true, sub: account.id } });
    expect(await app.store.lineUserOf(account.id)).toBe(alice.userId);
    const pushed = await call(app.url, 'POST', '/notify', { json: { sub: account.id, text: 'Shipped' }, headers: { 'x-notify-secret': world.notifySecret } });
    expect(pushed.status).toBe(200);
    expect(world.line.pushesTo(alice.userId)).toHaveLength(1);
    // The request is finished: polling it again is refused.
    expect(await poll(alice.token, started.request_id)).toMatchObject({ status: 404, body: { error: 'unknown_request' } });
  });

  it('stays pending while nobody approved, and asks Tsunagi at most once per interval (no slow_down)', async () => {
    const email = uniqueEmail('m2-pending');
    await createAccount(world.tsunagi, { email });
    const bob = newLineUser();
    const started = await start(bob.token, email);
    const answers = [await poll(bob.token, started.request_id), await poll(bob.token, started.request_id), await poll(bob.token, started.request_id)];
    for (const a of answers) expect(a).toEqual({ status: 200, body: { status: 'pending', binding_message: started.binding_message } });
  });

  it('answers an unknown address like a known one: pending, nobody is reached, nothing is linked', async () => {
    const carol = newLineUser();
    const unknown = uniqueEmail('m2-unknown');
    const started = await start(carol.token, unknown);
    expect(started.expires_in).toBe(300);
    expect(await poll(carol.token, started.request_id)).toMatchObject({ status: 200, body: { status: 'pending' } });
    await world.tsunagi.services.ciba.idle();
    expect(world.sink.messages.filter((m) => m.to.includes(unknown.toLowerCase()))).toEqual([]);
    expect(await app.store.subOf(carol.userId)).toBeUndefined();
  });

  it('tells the mini-app when the person refused, and links nothing', async () => {
    const email = uniqueEmail('m2-refuse');
    await createAccount(world.tsunagi, { email });
    const dave = newLineUser();
    const started = await start(dave.token, email);
    await personDecides(email, started.binding_message, 'refuse');
    expect(await poll(dave.token, started.request_id)).toMatchObject({ status: 403, body: { error: 'refused' } });
    expect(await app.store.subOf(dave.userId)).toBeUndefined();
  });

  it('does not let another LINE user poll (and link) someone else\'s request', async () => {
    const email = uniqueEmail('m2-steal');
    const account = await createAccount(world.tsunagi, { email });
    const victim = newLineUser();
    const attacker = newLineUser();
    const started = await start(victim.token, email);
    await personDecides(email, started.binding_message, 'approve');
    expect(await poll(attacker.token, started.request_id)).toMatchObject({ status: 404, body: { error: 'unknown_request' } });
    expect(await app.store.subOf(attacker.userId)).toBeUndefined();
    expect(await poll(victim.token, started.request_id)).toMatchObject({ status: 201, body: { sub: account.id } });
  });

  it('reports an expired request clearly', async () => {
    const email = uniqueEmail('m2-expired');
    const account = await createAccount(world.tsunagi, { email });
    const erin = newLineUser();
    const started = await start(erin.token, email);
    // Age Tsunagi's stored request past its expiry, as five minutes of waiting would.
    await world.tsunagi.services.ciba.idle();
    const { rows } = await world.tsunagi.services.db.pool.query<{ auth_req_id: string }>('SELECT auth_req_id FROM ciba_approvals WHERE account_id = $1', [account.id]);
    const authReqId = rows[0]?.auth_req_id as string;
    const model = world.tsunagi.services.host.current.BackchannelAuthenticationRequest;
    const payload = await model.adapter.find(authReqId);
    await model.adapter.upsert(authReqId, { ...payload, exp: Math.floor(Date.now() / 1000) - 1 } as never, 60);
    expect(await poll(erin.token, started.request_id)).toMatchObject({ status: 410, body: { error: 'expired', message: expect.stringContaining('expired') } });
    expect(await poll(erin.token, started.request_id)).toMatchObject({ status: 404 });
  });

  it('refuses a missing address, a request without the LINE token, and a LINE token of another channel', async () => {
    const frank = newLineUser();
    expect(await call(app.url, 'POST', '/ciba/start', { bearer: frank.token, json: {} })).toMatchObject({ status: 400, body: { error: 'invalid_login_hint' } });
    expect(await call(app.url, 'POST', '/ciba/start', { bearer: frank.token, json: { login_hint: 'not an address' } })).toMatchObject({ status: 400, body: { error: 'invalid_login_hint' } });
    expect(await call(app.url, 'POST', '/ciba/start', { json: { login_hint: uniqueEmail() } })).toMatchObject({ status: 401, body: { error: 'invalid_line_token' } });
    const foreign = world.line.issueAccessToken({ userId: FakeLinePlatform.newUserId(), channelId: '1657000999' });
    expect(await call(app.url, 'POST', '/ciba/start', { bearer: foreign, json: { login_hint: uniqueEmail() } })).toMatchObject({ status: 401 });
  });
});
