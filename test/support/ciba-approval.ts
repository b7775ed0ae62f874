// Helpers for CIBA approvals (LINE method 2): an account to reach, and a person who opens the
// approval link, signs in with an email code and decides.
import type { Account } from '../../src/accounts/account-store.js';
import { parseEmailAddress } from '../../src/accounts/email-address.js';
import { withTransaction } from '../../src/db/database.js';
import type { RunningServer } from '../../src/server.js';
import { codeFrom, type SmtpSink } from '../fakes/smtp-sink.js';
import { csrfOf, formAction, type Browser } from './browserless.js';
import { uniqueEmail } from './harness.js';

export async function createAccount(server: RunningServer, opts: { email?: string; phone?: string } = {}): Promise<Account> {
  const { accounts, db } = server.services;
  return withTransaction(db.pool, async (tx) => {
    const email = parseEmailAddress(opts.email ?? uniqueEmail('ciba'));
    if (!email) throw new Error('bad test email');
    const account = await accounts.createAccountWithVerifiedEmail(tx, email);
    if (opts.phone) await accounts.addVerifiedPhone(tx, account.id, opts.phone);
    return account;
  });
}

/** The approval link in a mail or SMS. */
export function linkIn(text: string): string {
  const m = /(http:\/\/\S+\/account\/ciba\/[A-Za-z0-9_-]{43})/.exec(text);
  if (!m?.[1]) throw new Error(`no approval link in: ${text}`);
  return m[1];
}

/** Opens the approval link and signs in with an email code when asked; returns the approval page. */
export async function openApproval(server: RunningServer, sink: SmtpSink, browser: Browser, link: string, email: string, until = '/account/ciba/') {
  const issuer = server.services.config.issuer;
  let page = await browser.follow(link);
  for (let i = 0; i < 6 && !page.url.includes(until); i++) {
    if (page.body.includes('name="email" type="email"')) {
      page = await browser.follow(new URL(formAction(page.body, '/email'), issuer).href, { form: { _csrf: csrfOf(page.body), email } });
    } else if (page.body.includes('autocomplete="one-time-code"')) {
      const code = codeFrom(await sink.nextMailTo(email));
      page = await browser.follow(new URL(formAction(page.body, '/code'), issuer).href, { form: { _csrf: csrfOf(page.body), code } });
    } else {
      throw new Error(`unexpected page ${page.url}: ${page.body.slice(0, 300)}`);
    }
  }
  return page;
}

export const decide = (browser: Browser, link: string, page: { body: string }, decision: 'approve' | 'refuse') =>
  browser.follow(link, { form: { _csrf: csrfOf(page.body), decision } });

