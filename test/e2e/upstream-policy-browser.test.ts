import type { Browser } from 'playwright-core';
import * as oidc from 'openid-client';
import { parseEmailAddress } from '../../src/accounts/email-address.js';
import { withTransaction } from '../../src/db/database.js';
import type { RunningServer } from '../../src/server.js';
import { FakeGoogle } from '../fakes/google.js';
import { launchChromium, screenshot } from '../support/chromium.js';
import { axeViolations } from '../support/axe.js';
import { describeBackends, startTestServer } from '../support/harness.js';
import { RelyingPartyServer, authorizationRequest, discover } from './support.js';

const TEXT = {
  en: {
    google: 'Continue with Google', linkTitle: 'Link your account?', create: 'Create account',
    refused: 'is not linked to an account here', settings: 'Open account settings to link it', otherWay: 'Try again or sign in another way',
  },
  ja: {
    google: 'Google で続ける', linkTitle: 'アカウントを連携しますか？', create: 'アカウントを作成',
    refused: 'ここにあるどのアカウントにも連携されていません', settings: 'アカウント設定を開いて連携する', otherWay: 'もう一度試す・別の方法でログイン',
  },
} as const;

// upstream_policy signin_only (MIXI M): Google only signs in an account it was linked to from the
// account page. No signup, no link offer on a matching email, no profile data taken; and `full`
// (the default) keeps offering both.
describe(`upstream_policy per client, in Chromium (${describeBackends()})`, () => {
  let server: RunningServer;
  let google: FakeGoogle;
  let rp: RelyingPartyServer;
  let browser: Browser;
  let strict: oidc.Configuration;
  let full: oidc.Configuration;
  let redirectUri: string;

  beforeAll(async () => {
    google = await new FakeGoogle().start();
    rp = new RelyingPartyServer();
    redirectUri = `${await rp.start()}/cb`;
    server = await startTestServer({ ISSUER: 'http://localhost:{port}', ...google.env() });
    const a = await server.services.clients.add({ client_name: 'Wallet', redirect_uris: [redirectUri], first_party: true, upstream_policy: 'signin_only' });
    strict = await discover(server, a.client_id as string, a.client_secret as string);
    const b = await server.services.clients.add({ client_name: 'Shop', redirect_uris: [redirectUri], first_party: true });
    full = await discover(server, b.client_id as string, b.client_secret as string);
    browser = await launchChromium();
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await google?.close();
    await rp?.close();
  });

  const sub = () => `${Date.now()}${Math.floor(Math.random() * 1e6)}`;
  // Google vouches for gmail.com addresses (src/upstream/google.ts): the ones a full client matches and offers to link.
  const gmail = (tag: string) => `${tag}.${sub()}@gmail.com`;
  const db = () => server.services.db.pool;

  async function accountWithEmail(email: string) {
    const { accounts } = server.services;
    const parsed = parseEmailAddress(email);
    if (!parsed) throw new Error('bad test email');
    return withTransaction(db(), (tx) => accounts.createAccountWithVerifiedEmail(tx, parsed, 'Kept Name'));
  }

  /** Everything a refused sign-in must not have written: accounts, links, parked decisions, audit rows. */
  async function footprint(email: string, googleSub: string, interactionUid: string) {
    const q = async (sql: string, params: unknown[]) => Number((await db().query<{ n: string }>(sql, params)).rows[0]?.n);
    return {
      accounts: await q('SELECT count(*) AS n FROM account_emails WHERE email = $1', [email]),
      identities: await q('SELECT count(*) AS n FROM upstream_identities WHERE subject = $1', [googleSub]),
      parked: await q('SELECT count(*) AS n FROM interaction_proofs WHERE interaction_uid = $1', [interactionUid]),
      audit: await q(`SELECT count(*) AS n FROM audit_events e JOIN account_emails m ON m.account_id = e.account_id WHERE m.email = $1`, [email]),
    };
  }
  const uidOf = (url: string) => {
    const uid = /\/interaction\/([^/?]+)/.exec(url)?.[1];
    if (!uid) throw new Error(`not on a sign-in page: ${url}`);
    return uid;
  };

  async function open(locale: 'en' | 'ja', config: oidc.Configuration) {
    const context = await browser.newContext({ viewport: { width: 390, height: 780 }, locale: locale === 'ja' ? 'ja-JP' : 'en-US' });
    const page = await context.newPage();
    const req = await authorizationRequest(config, redirectUri, { scope: 'openid email profile', ui_locales: locale });
    await page.goto(req.url.href);
    return { context, page, req };
  }

  for (const locale of ['en', 'ja'] as const) {
    const t = TEXT[locale];

    it(`refuses an unlinked Google identity whose verified email matches an account: the page, no offer, nothing written (${locale})`, async () => {
      const email = gmail(`strict-${locale}`);
      await accountWithEmail(email);
      const googleSub = sub();
      const { context, page } = await open(locale, strict);
      const uid = uidOf(page.url());
      const before = await footprint(email, googleSub, uid);
      expect(before).toEqual({ accounts: 1, identities: 0, parked: 0, audit: 0 });
      google.nextUser({ sub: googleSub, email, email_verified: true, name: 'Someone Else' });
      await page.getByRole('button', { name: t.google }).click();
      await page.getByRole('link', { name: t.settings }).waitFor();
      expect(await page.textContent('main')).toContain(t.refused);
      expect(await page.getByRole('heading', { name: t.linkTitle }).count()).toBe(0);
      expect(await page.getByRole('button', { name: t.create }).count()).toBe(0);
      expect(await page.getByRole('link', { name: t.settings }).getAttribute('href')).toBe('/account');
      await screenshot(page, `${locale}-90-upstream-signin-only`);
      expect(await axeViolations(page)).toEqual([]);
      expect(await footprint(email, googleSub, uid)).toEqual(before);
      // "Sign in another way" goes back to the same sign-in, which still works.
      await page.getByRole('link', { name: t.otherWay }).click();
      await page.getByRole('button', { name: t.google }).waitFor();
      await context.close();
    });
  }

  it('refuses an unlinked Google identity with an email no account has, and creates nothing', async () => {
    const email = gmail('strict-unknown');
    const googleSub = sub();
    const { context, page } = await open('en', strict);
    const uid = uidOf(page.url());
    google.nextUser({ sub: googleSub, email, email_verified: true, name: 'New Person' });
    await page.getByRole('button', { name: TEXT.en.google }).click();
    await page.getByRole('link', { name: TEXT.en.settings }).waitFor();
    expect(await page.textContent('main')).toContain(TEXT.en.refused);
    expect(await footprint(email, googleSub, uid)).toEqual({ accounts: 0, identities: 0, parked: 0, audit: 0 });
    await context.close();
  });

  it('signs in an account through its linked Google identity, and takes no profile data from Google', async () => {
    const email = gmail('strict-linked');
    const account = await accountWithEmail(email);
    const googleSub = sub();
    await server.services.identities.link(undefined, account.id, {
      provider: 'google', issuer: google.issuer, subject: googleSub, email, emailVerified: true, isPrivateEmail: false, name: 'Linked Name',
    });
    const { context, page, req } = await open('en', strict);
    google.nextUser({ sub: googleSub, email: `changed-${email}`, email_verified: true, name: 'Changed At Google' });
    await page.getByRole('button', { name: TEXT.en.google }).click();
    await page.waitForURL((u) => u.href.startsWith(redirectUri));
    const tokens = await oidc.authorizationCodeGrant(strict, new URL(page.url()), { pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce });
    expect(tokens.claims()).toMatchObject({ sub: account.id, email, amr: ['fed'] });
    const linked = await server.services.identities.findByIssuerSubject(google.issuer, googleSub);
    expect(linked).toMatchObject({ email, name: 'Linked Name' });
    await context.close();
  });

  it('leaves a full client unchanged: the same kind of identity gets the link offer', async () => {
    const email = gmail('full-offer');
    await accountWithEmail(email);
    const { context, page } = await open('en', full);
    google.nextUser({ sub: sub(), email, email_verified: true });
    await page.getByRole('button', { name: TEXT.en.google }).click();
    await page.getByRole('heading', { name: TEXT.en.linkTitle }).waitFor();
    await context.close();
  });
});
