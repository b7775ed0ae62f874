import type { Account } from '../../src/accounts/account-store.js';
import { parseEmailAddress, type EmailAddress } from '../../src/accounts/email-address.js';
import { withTransaction } from '../../src/db/database.js';
import type { Mailer, OutgoingMail } from '../../src/delivery/mailer.js';
import type { RunningServer } from '../../src/server.js';
import { Browser, csrfOf } from '../support/browserless.js';
import { describeBackends, startTestServer } from '../support/harness.js';
import { authorizationRequest, discover } from './support.js';

// Issue 9 section 3: "Kate@example.com" typed with U+212A KELVIN SIGN lower-cased to kate's key, the
// code went to the typed string, and the sign-in landed in kate's account. Now a typed address is
// normalised once at the edge (look-alikes are refused), and a code for an existing account goes to
// the address stored on that account, never to the typed string.

const REDIRECT = 'http://127.0.0.1:9/cb';

/** Keeps every mail exactly as Tsunagi addressed it (an SMTP server would fold the case). */
class RecordingMailer implements Mailer {
  readonly sent: OutgoingMail[] = [];
  async send(mail: OutgoingMail): Promise<void> { this.sent.push(mail); }
}

describe(`look-alike email addresses (${describeBackends()})`, () => {
  let server: RunningServer;
  let mailer: RecordingMailer;
  let issuer: string;
  let clientId: string;
  let clientSecret: string;
  let kate: Account;
  let stored: EmailAddress;

  beforeAll(async () => {
    mailer = new RecordingMailer();
    server = await startTestServer({}, { mailer });
    issuer = server.services.config.issuer;
    const added = await server.services.clients.add({ client_name: 'Shop', redirect_uris: [REDIRECT], first_party: true });
    clientId = added.client_id as string;
    clientSecret = added.client_secret as string;
    // Kate registered with a capital K: that is the address her mailbox was proven at.
    stored = parseEmailAddress(`Kate.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}@example.test`) as EmailAddress;
    kate = await withTransaction(server.services.db.pool, (tx) => server.services.accounts.createAccountWithVerifiedEmail(tx, stored));
  });

  afterAll(async () => {
    await server?.close();
  });

  const signInPage = async () => {
    const config = await discover(server, clientId, clientSecret);
    const req = await authorizationRequest(config, REDIRECT);
    const browser = new Browser();
    const login = await browser.follow(req.url.href);
    const uid = /\/interaction\/([\w-]+)\//.exec(login.body)?.[1] as string;
    return { browser, uid, csrf: csrfOf(login.body) };
  };
  const challengesOf = async (uid: string) => {
    const { rows } = await server.services.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM otp_challenges WHERE interaction_uid = $1', [uid]);
    return rows[0]?.n;
  };

  it('sends the code for an existing account to the address stored on it, not to the typed spelling', async () => {
    const { browser, uid, csrf } = await signInPage();
    const typed = stored.address.toUpperCase();
    const sent = mailer.sent.length;
    const res = await browser.request(`${issuer}/interaction/${uid}/email`, { form: { _csrf: csrf, email: typed } });
    expect(res.res.status).toBe(303);
    expect(mailer.sent.slice(sent).map((m) => m.to)).toEqual([stored.address]);
    // The code proves the stored address and signs kate in.
    const code = /\b(\d{6})\b/.exec(mailer.sent.at(-1)?.text ?? '')?.[1] as string;
    const page = await browser.request(`${issuer}/interaction/${uid}/code`, { form: { _csrf: csrf, code } });
    expect(page.res.status).toBe(303);
    const { rows } = await server.services.db.pool.query<{ account_id: string }>(
      `SELECT account_id FROM audit_events WHERE type = 'sign_in' AND account_id = $1`, [kate.id]);
    expect(rows).toHaveLength(1);
  });

  const localPart = () => stored.address.slice(1, stored.address.indexOf('@'));
  it.each([
    ['the Kelvin sign (U+212A) for K', () => `\u212A${localPart()}@example.test`, 'Addresses with characters other than a–z'],
    ['a dotless i (U+0131)', () => `kate\u0131${localPart()}@example.test`, 'Addresses with characters other than a–z'],
    ['full-width letters', () => `\uFF2B\uFF41\uFF54\uFF45${localPart().slice(3)}@example.test`, 'Addresses with characters other than a–z'],
    ['full-width letters in the domain', () => `K${localPart()}@\uFF45xample.test`, 'Enter an email address like name@example.com.'],
    ['an RTL override (U+202E)', () => `\u202EK${localPart()}@example.test`, 'cannot be part of an email address'],
    ['a zero-width joiner', () => `K\u200D${localPart()}@example.test`, 'cannot be part of an email address'],
  ])('refuses %s with a clear message: no code, no mail, no sign-in', async (_label, typed, message) => {
    const { browser, uid, csrf } = await signInPage();
    const sent = mailer.sent.length;
    const res = await browser.request(`${issuer}/interaction/${uid}/email`, { form: { _csrf: csrf, email: typed() } });
    expect(res.res.status).toBe(400);
    expect(res.body).toContain(message);
    expect(mailer.sent.length).toBe(sent);
    expect(await challengesOf(uid)).toBe(0);
  });

  it.each([
    ['a NUL byte', (csrf: string) => Buffer.from(`_csrf=${encodeURIComponent(csrf)}&email=kate%00%40example.test`)],
    ['percent-encoded invalid UTF-8', (csrf: string) => Buffer.from(`_csrf=${encodeURIComponent(csrf)}&email=%C0%AFkate%FF%40example.test`)],
    ['raw invalid UTF-8 bytes', (csrf: string) => Buffer.concat([Buffer.from(`_csrf=${encodeURIComponent(csrf)}&email=`), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('kate%40example.test')])],
  ])('refuses an address carrying %s in the form POST: 400, nothing sent or stored', async (_label, body) => {
    const { browser, uid, csrf } = await signInPage();
    const sent = mailer.sent.length;
    const res = await fetch(`${issuer}/interaction/${uid}/email`, {
      method: 'POST', redirect: 'manual', body: body(csrf),
      headers: { cookie: browser.jar.header(), 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(res.status).toBe(400);
    expect(mailer.sent.length).toBe(sent);
    expect(await challengesOf(uid)).toBe(0);
  });
});
