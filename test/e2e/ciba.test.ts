import { decodeJwt } from 'jose';
import { CIBA_GRANT, CIBA_POLL_INTERVAL_SECONDS } from '../../src/oidc/ciba.js';
import type { RunningServer } from '../../src/server.js';
import { FakeTwilio } from '../fakes/twilio.js';
import { SmtpSink, type ReceivedMail } from '../fakes/smtp-sink.js';
import { Browser, csrfOf } from '../support/browserless.js';
import { createAccount, decide, linkIn, openApproval } from '../support/ciba-approval.js';
import { describeBackends, startTestServer, uniqueEmail } from '../support/harness.js';

type Answer = { status: number; json: Record<string, unknown>; headers: Headers };
interface Backend { id: string; secret: string }

let phoneCounter = 0;
const newPhone = () => `+8190${String((Date.now() % 100_000_000) + phoneCounter++).padStart(8, '0').slice(-8)}`;

async function addBackend(server: RunningServer, metadata: Record<string, unknown> = {}): Promise<Backend> {
  const added = await server.services.clients.add({
    client_name: 'Example Shop mini app', grant_types: [CIBA_GRANT], response_types: [], redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic', backchannel_token_delivery_mode: 'poll', require_auth_time: true, ...metadata,
  });
  return { id: added.client_id as string, secret: added.client_secret as string };
}

async function post(server: RunningServer, path: string, client: Backend | undefined, form: Record<string, string>): Promise<Answer> {
  const res = await fetch(`${server.services.config.issuer}${path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      ...(client ? { authorization: `Basic ${Buffer.from(`${encodeURIComponent(client.id)}:${encodeURIComponent(client.secret)}`).toString('base64')}` } : {}),
    },
    body: new URLSearchParams(form),
  });
  return { status: res.status, json: await res.json() as Record<string, unknown>, headers: res.headers };
}

const backchannel = (server: RunningServer, client: Backend, form: Record<string, string>) =>
  post(server, '/backchannel', client, { scope: 'openid', binding_message: 'SHOP-4821', ...form });
const poll = (server: RunningServer, client: Backend, authReqId: string) =>
  post(server, '/token', client, { grant_type: CIBA_GRANT, auth_req_id: authReqId });

// LINE mini-app method 2: OpenID CIBA in poll mode against a real Tsunagi, with the approval link
// sent by mail (SMTP sink) or SMS (fake Twilio) and approved in a browser after signing in.
describe(`OpenID CIBA (backchannel authentication, poll mode) (${describeBackends()})`, () => {
  let server: RunningServer;
  let sink: SmtpSink;
  let backend: Backend;
  let otherBackend: Backend;

  beforeAll(async () => {
    sink = new SmtpSink();
    server = await startTestServer({ SMTP_URL: await sink.start() });
    backend = await addBackend(server);
    otherBackend = await addBackend(server, { client_name: 'Another shop' });
  });

  afterAll(async () => {
    await server?.close();
    await sink?.close();
  });

  it('advertises the backchannel endpoint, the CIBA grant and poll mode only', async () => {
    const discovery = await (await fetch(`${server.services.config.issuer}/.well-known/openid-configuration`)).json() as Record<string, unknown>;
    expect(discovery.backchannel_authentication_endpoint).toBe(`${server.services.config.issuer}/backchannel`);
    expect(discovery.backchannel_token_delivery_modes_supported).toEqual(['poll']);
    expect(discovery.grant_types_supported).toContain(CIBA_GRANT);
    expect(discovery.backchannel_user_code_parameter_supported).toBe(false);
  });

  it('reaches the person at the stored address, who signs in, sees the app and binding message, approves; the backend polls an ID token for that account', async () => {
    const email = uniqueEmail('ciba-approve');
    const account = await createAccount(server, { email });
    // The backend sends what the person typed: other case, surrounding spaces.
    const started = await backchannel(server, backend, { login_hint: `  ${email.toUpperCase()} `, scope: 'openid email' });
    expect(started.status).toBe(200);
    expect(Object.keys(started.json).sort()).toEqual(['auth_req_id', 'expires_in', 'interval']);
    expect(started.json.interval).toBe(CIBA_POLL_INTERVAL_SECONDS);
    const authReqId = started.json.auth_req_id as string;

    // Pending, then too fast.
    expect((await poll(server, backend, authReqId)).json.error).toBe('authorization_pending');
    expect((await poll(server, backend, authReqId)).json.error).toBe('slow_down');

    const mail: ReceivedMail = await sink.nextMailTo(email);
    expect(mail.to).toEqual([email.toLowerCase()]);
    expect(mail.subject).toContain('Example Shop mini app');
    expect(mail.subject).toContain('SHOP-4821');
    expect(mail.text).toContain('SHOP-4821');
    const link = linkIn(mail.text);

    const browser = new Browser();
    const approvalPage = await openApproval(server, sink, browser, link, email);
    expect(approvalPage.res.status).toBe(200);
    expect(approvalPage.body).toContain('Example Shop mini app');
    expect(approvalPage.body).toMatch(/data-binding-message>SHOP-4821</);
    expect(approvalPage.body).toContain('See your email address');
    const done = await decide(browser, link, approvalPage, 'approve');
    expect(done.body).toContain('data-ciba-outcome="approved"');

    const tokens = await poll(server, backend, authReqId);
    expect(tokens.status).toBe(200);
    const idToken = decodeJwt(tokens.json.id_token as string);
    expect(idToken).toMatchObject({ sub: account.id, aud: backend.id, email: email.replace(/@.*/, (d) => d.toLowerCase()), amr: ['otp'] });
    expect(typeof idToken.auth_time).toBe('number');
    // The request is used up.
    expect((await poll(server, backend, authReqId)).json.error).toBe('invalid_grant');
    // The link is single use.
    const again = await decide(browser, link, approvalPage, 'approve');
    expect(again.res.status).toBe(400);
    expect(again.body).toContain('data-ciba-outcome="invalid"');
  });

  it('answers an unknown address exactly like a known one, and reaches nobody; the request then expires', async () => {
    const known = uniqueEmail('ciba-known');
    await createAccount(server, { email: known });
    const unknown = uniqueEmail('ciba-unknown');
    const a = await backchannel(server, backend, { login_hint: known });
    const b = await backchannel(server, backend, { login_hint: unknown });
    expect(b.status).toBe(a.status);
    expect(Object.keys(b.json).sort()).toEqual(Object.keys(a.json).sort());
    expect(b.json.expires_in).toBe(a.json.expires_in);
    expect(b.json.interval).toBe(a.json.interval);
    expect((b.json.auth_req_id as string).length).toBe((a.json.auth_req_id as string).length);
    expect((await poll(server, backend, b.json.auth_req_id as string)).json.error).toBe('authorization_pending');

    await server.services.ciba.idle();
    await sink.nextMailTo(known);
    expect(sink.messages.filter((m) => m.to.includes(unknown.toLowerCase()))).toEqual([]);

    // Age the stored request past its expiry, as ten minutes of waiting would.
    const model = server.services.host.current.BackchannelAuthenticationRequest;
    const payload = await model.adapter.find(b.json.auth_req_id as string);
    await model.adapter.upsert(b.json.auth_req_id as string, { ...payload, exp: Math.floor(Date.now() / 1000) - 1 } as never, 60);
    const expired = await poll(server, backend, b.json.auth_req_id as string);
    expect(expired.status).toBe(400);
    expect(expired.json.error).toBe('expired_token');
  });

  it('gives access_denied after the person refuses, and the link cannot be used again', async () => {
    const email = uniqueEmail('ciba-refuse');
    await createAccount(server, { email });
    const started = await backchannel(server, backend, { login_hint: email });
    const link = linkIn((await sink.nextMailTo(email)).text);
    const browser = new Browser();
    const approvalPage = await openApproval(server, sink, browser, link, email);
    const done = await decide(browser, link, approvalPage, 'refuse');
    expect(done.body).toContain('data-ciba-outcome="refused"');
    const answer = await poll(server, backend, started.json.auth_req_id as string);
    expect(answer.status).toBe(400);
    expect(answer.json.error).toBe('access_denied');
    const reopened = await browser.follow(link);
    expect(reopened.res.status).toBe(400);
    expect(reopened.body).toContain('data-ciba-outcome="invalid"');
  });

  it('does not let another signed-in account approve, and the request stays pending', async () => {
    const email = uniqueEmail('ciba-victim');
    await createAccount(server, { email });
    const intruder = uniqueEmail('ciba-intruder');
    await createAccount(server, { email: intruder });
    const started = await backchannel(server, backend, { login_hint: email });
    const link = linkIn((await sink.nextMailTo(email)).text);
    // The link was forwarded: whoever opens it must sign in, and as someone else it does nothing.
    const browser = new Browser();
    const page = await openApproval(server, sink, browser, link, intruder);
    expect(page.res.status).toBe(403);
    expect(page.body).toContain('data-ciba-other-account');
    expect(page.body).not.toContain('name="decision"');
    // Even a hand-made form post (with this browser's own CSRF token) changes nothing.
    const csrf = csrfOf((await browser.follow(`${server.services.config.issuer}/account`)).body);
    const forced = await browser.follow(link, { form: { _csrf: csrf, decision: 'approve' } });
    expect(forced.res.status).toBe(403);
    expect((await poll(server, backend, started.json.auth_req_id as string)).json.error).toBe('authorization_pending');
  });

  it('refuses polling with another client, and a client not registered for CIBA', async () => {
    const email = uniqueEmail('ciba-wrong-client');
    await createAccount(server, { email });
    const started = await backchannel(server, backend, { login_hint: email });
    const stolen = await poll(server, otherBackend, started.json.auth_req_id as string);
    expect(stolen.status).toBe(400);
    expect(stolen.json).toMatchObject({ error: 'invalid_grant' });

    const codeOnly = await server.services.clients.add({ client_name: 'Web shop', redirect_uris: ['http://127.0.0.1:9/cb'] });
    const refused = await backchannel(server, { id: codeOnly.client_id as string, secret: codeOnly.client_secret as string }, { login_hint: email });
    expect(refused.status).toBe(400);
    // oidc-provider answers invalid_request (not unauthorized_client) here, as for the device grant.
    expect(refused.json).toMatchObject({ error: 'invalid_request', error_description: expect.stringContaining('not allowed for this client') });
    const unauthenticated = await post(server, '/backchannel', undefined, { client_id: backend.id, scope: 'openid', login_hint: email, binding_message: 'X1' });
    expect(unauthenticated.status).toBe(401);
    expect(unauthenticated.json.error).toBe('invalid_client');
  });

  it('refuses a missing or unsafe binding message, a login_hint that is no address, and id_token_hint', async () => {
    const email = uniqueEmail('ciba-bad');
    const noMessage = await post(server, '/backchannel', backend, { scope: 'openid', login_hint: email });
    expect(noMessage.json.error).toBe('invalid_binding_message');
    const url = await backchannel(server, backend, { login_hint: email, binding_message: 'visit https://evil.example/now' });
    expect(url.json.error).toBe('invalid_binding_message');
    const notAnAddress = await backchannel(server, backend, { login_hint: 'hanako' });
    expect(notAnAddress.json).toMatchObject({ error: 'invalid_request', error_description: expect.stringContaining('email address or a phone number') });
    const japanese = await backchannel(server, backend, { login_hint: email, binding_message: 'ツナギ 42' });
    expect(japanese.status).toBe(200);
  });

  it('rate-limits sends per address, the same way for known and unknown addresses', async () => {
    const known = uniqueEmail('ciba-limit-known');
    await createAccount(server, { email: known });
    const unknown = uniqueEmail('ciba-limit-unknown');
    for (const address of [known, unknown]) {
      for (let i = 0; i < 3; i++) expect((await backchannel(server, backend, { login_hint: address })).status).toBe(200);
      const limited = await backchannel(server, backend, { login_hint: address });
      expect(limited.status).toBe(429);
      expect(limited.json.error).toBe('slow_down');
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    }
    await server.services.ciba.idle();
    const sentToKnown = sink.messages.filter((m) => m.to.includes(known.toLowerCase()));
    expect(sentToKnown).toHaveLength(3);
  });

  it('shows the approval page in Japanese', async () => {
    const email = uniqueEmail('ciba-ja');
    await createAccount(server, { email });
    await backchannel(server, backend, { login_hint: email, binding_message: 'ツナギ-7', ui_locales: 'ja' });
    const mail = await sink.nextMailTo(email);
    expect(mail.subject).toContain('確認依頼');
    const link = linkIn(mail.text);
    const browser = new Browser({ 'accept-language': 'ja' });
    const page = await openApproval(server, sink, browser, link, email);
    expect(page.body).toContain('アプリからの確認依頼を承認しますか');
    expect(page.body).toMatch(/data-binding-message>ツナギ-7</);
    expect(page.body).toContain('Example Shop mini app を承認する');
  });
});

describe(`OpenID CIBA by SMS, with small per-client and per-IP limits (${describeBackends()})`, () => {
  let server: RunningServer;
  let sink: SmtpSink;
  let twilio: FakeTwilio;

  beforeAll(async () => {
    sink = new SmtpSink();
    twilio = new FakeTwilio();
    const base = await twilio.start();
    server = await startTestServer({
      SMTP_URL: await sink.start(), TWILIO_ACCOUNT_SID: twilio.accountSid, TWILIO_AUTH_TOKEN: twilio.authToken,
      TWILIO_FROM: '+15005550006', TWILIO_API_BASE_URL: base, TWILIO_TIMEOUT_MS: '1500',
    }, {
      cibaLimits: {
        perAddress: { name: 'ciba:address', limit: 3, windowSeconds: 900 },
        perAddressDaily: { name: 'ciba:address-day', limit: 10, windowSeconds: 86400 },
        perClient: { name: 'ciba:client', limit: 4, windowSeconds: 900 },
        perIp: { name: 'ciba:ip', limit: 6, windowSeconds: 900 },
      },
    });
  });

  afterAll(async () => {
    await server?.close();
    await sink?.close();
    await twilio?.close();
  });

  it('sends the link by SMS to the stored number (typed in national format), naming the app and the binding message', async () => {
    const phone = newPhone();
    const email = uniqueEmail('ciba-sms');
    const account = await createAccount(server, { email, phone });
    const backend = await addBackend(server);
    const typed = `0${phone.slice(3, 5)}-${phone.slice(5, 9)}-${phone.slice(9)}`;
    const started = await backchannel(server, backend, { login_hint: typed });
    expect(started.status).toBe(200);
    await server.services.ciba.idle();
    const sms = twilio.lastMessageTo(phone);
    expect(sms?.body).toContain('Example Shop mini app');
    expect(sms?.body).toContain('SHOP-4821');
    const link = linkIn(sms?.body ?? '');
    const browser = new Browser();
    const page = await openApproval(server, sink, browser, link, email);
    await decide(browser, link, page, 'approve');
    const tokens = await poll(server, backend, started.json.auth_req_id as string);
    expect(decodeJwt(tokens.json.id_token as string).sub).toBe(account.id);
  });

  it('rate-limits per client, and per IP across clients', async () => {
    const first = await addBackend(server);
    const second = await addBackend(server);
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await backchannel(server, first, { login_hint: uniqueEmail('ciba-client') })).status);
    expect(statuses).toEqual([200, 200, 200, 200, 429]);
    // The IP already counted 5 (with the SMS test's 1: 6); the next from another client is over its limit.
    const overIp = await backchannel(server, second, { login_hint: uniqueEmail('ciba-ip') });
    expect(overIp.status).toBe(429);
    expect(overIp.json.error).toBe('slow_down');
  });
});
