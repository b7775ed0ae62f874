import { FakeLinePlatform } from '../../../test/fakes/line.js';
import { Browser, csrfOf } from '../../../test/support/browserless.js';
import { createAccount, openApproval } from '../../../test/support/ciba-approval.js';
import { describeBackends, uniqueEmail } from '../../../test/support/harness.js';
import type { RunningLinkApp } from '../src/main.js';
import { CHANNEL_ID, call, exampleConfig, startExample, startWorld, type World } from './support.js';

// Method 3 through the example backend: it imports Tsunagi's export and links a LINE user when the
// link code the person made on Tsunagi's account page matches.
describe(`LINE mini-app backend, method 3: export import and link codes (${describeBackends()})`, () => {
  let world: World;
  let app: RunningLinkApp;
  let spaId: string;
  let exportClient: { id: string; secret: string };

  beforeAll(async () => {
    world = await startWorld();
    spaId = (await world.tsunagi.services.clients.add({
      client_name: 'Mini app page', redirect_uris: ['http://127.0.0.1:9/liff/callback'], token_endpoint_auth_method: 'none', first_party: true,
    })).client_id as string;
    const added = await world.tsunagi.services.clients.add({
      client_name: 'Example Shop mini app', grant_types: ['client_credentials'], response_types: [], redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic', scope: 'tsunagi:export',
    });
    exportClient = { id: added.client_id as string, secret: added.client_secret as string };
    app = await startExample(exampleConfig(world, spaId, { TSUNAGI_EXPORT_CLIENT_ID: exportClient.id, TSUNAGI_EXPORT_CLIENT_SECRET: exportClient.secret }));
  });

  afterAll(async () => {
    await app?.close();
    await world?.close();
  });

  const newLineUser = () => {
    const userId = FakeLinePlatform.newUserId();
    return { userId, token: world.line.issueAccessToken({ userId, channelId: CHANNEL_ID }) };
  };
  /** The person signs in to Tsunagi's account page and makes a link code for the app; returns the browser and the page. */
  const makeCode = async (email: string, browser = new Browser(), previous?: { body: string }) => {
    const issuer = world.tsunagi.services.config.issuer;
    const page = previous ?? await openApproval(world.tsunagi, world.sink, browser, `${issuer}/account/link-code/${exportClient.id}`, email, '/account/link-code/');
    const issued = await browser.follow(`${issuer}/account/link-code/${exportClient.id}`, { form: { _csrf: csrfOf(page.body), action: 'issue' } });
    const code = /data-link-code>(\d{4}-\d{4})</.exec(issued.body)?.[1];
    if (!code) throw new Error(`no link code on the page: ${issued.body.slice(0, 300)}`);
    return { code, browser, page: issued };
  };
  const linkByCode = (lineToken: string, code: string) => call(app.url, 'POST', '/link/code', { bearer: lineToken, json: { code } });

  it('links the LINE user who types the code, once; a stopped share removes the link on the next import', async () => {
    const email = uniqueEmail('m3');
    const account = await createAccount(world.tsunagi, { email });
    const { code, browser, page } = await makeCode(email);
    const alice = newLineUser();
    expect(await linkByCode(alice.token, code)).toEqual({ status: 201, body: { linked: true, created: true, sub: account.id } });
    expect(await app.store.subOf(alice.userId)).toBe(account.id);
    // Single use: the same code again (even by another LINE user) fails.
    const bob = newLineUser();
    expect(await linkByCode(bob.token, code)).toMatchObject({ status: 400, body: { error: 'invalid_code' } });

    // The person stops sharing with the app: the next import is a tombstone, and the link goes.
    await browser.follow(`${world.tsunagi.services.config.issuer}/account/link-code/${exportClient.id}`, { form: { _csrf: csrfOf(page.body), action: 'stop' } });
    await app.exportLinks.sync();
    expect(await app.store.subOf(alice.userId)).toBeUndefined();
  });

  it('refuses a wrong code and a rotated (replaced) code with a clear message', async () => {
    const email = uniqueEmail('m3-rotate');
    await createAccount(world.tsunagi, { email });
    const first = await makeCode(email);
    const second = await makeCode(email, first.browser, first.page);
    const carol = newLineUser();
    if (first.code !== second.code) {
      const old = await linkByCode(carol.token, first.code);
      expect(old).toMatchObject({ status: 400, body: { error: 'invalid_code', message: expect.stringContaining('replaced by a newer one') } });
    }
    const wrong = await linkByCode(carol.token, '0000-0000' === second.code ? '0000-0001' : '0000-0000');
    expect(wrong).toMatchObject({ status: 400, body: { error: 'invalid_code' } });
    expect(await app.store.subOf(carol.userId)).toBeUndefined();
    expect(await linkByCode(carol.token, 'abc')).toMatchObject({ status: 400, body: { error: 'invalid_code', message: expect.stringContaining('8-digit') } });
    expect((await linkByCode(carol.token, second.code)).status).toBe(201);
  });

  it('refuses an expired code', async () => {
    const email = uniqueEmail('m3-expired');
    await createAccount(world.tsunagi, { email });
    const { code } = await makeCode(email);
    // A backend whose clock is 11 minutes ahead: the 10-minute code has expired there.
    const later = await startExample({
      ...exampleConfig(world, spaId, { TSUNAGI_EXPORT_CLIENT_ID: exportClient.id, TSUNAGI_EXPORT_CLIENT_SECRET: exportClient.secret }),
      now: () => new Date(Date.now() + 11 * 60_000),
    });
    try {
      const dave = newLineUser();
      const res = await call(later.url, 'POST', '/link/code', { bearer: dave.token, json: { code } });
      expect(res).toMatchObject({ status: 400, body: { error: 'expired_code', message: expect.stringContaining('expired') } });
      expect(await later.store.subOf(dave.userId)).toBeUndefined();
    } finally {
      await later.close();
    }
  });

  it('limits link code attempts per LINE user, even for the right code afterwards', async () => {
    const email = uniqueEmail('m3-guess');
    await createAccount(world.tsunagi, { email });
    const { code } = await makeCode(email);
    const guesser = newLineUser();
    const wrong = code === '0000-0000' ? '0000-0001' : '0000-0000';
    for (let i = 0; i < 5; i++) expect((await linkByCode(guesser.token, wrong)).status).toBe(400);
    expect(await linkByCode(guesser.token, code)).toMatchObject({ status: 429, body: { error: 'too_many_attempts' } });
    expect(await app.store.subOf(guesser.userId)).toBeUndefined();
    // Another LINE user is not affected.
    expect((await linkByCode(newLineUser().token, code)).status).toBe(201);
  });
});
