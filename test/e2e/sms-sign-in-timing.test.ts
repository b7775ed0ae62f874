import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { withTransaction } from '../../src/db/database.js';
import type { RunningServer } from '../../src/server.js';
import { FakeTwilio } from '../fakes/twilio.js';
import { Browser, csrfOf } from '../support/browserless.js';
import { describeBackends, startTestServer } from '../support/harness.js';
import { authorizationRequest, discover } from './support.js';

// Issue 9 section 7: the sign-in page must not tell, by its answer or by how long the answer takes,
// whether a phone number has an account. A known number used to wait for Twilio; an unknown one did
// not. Both now take the same awaited steps and neither waits for delivery.

const REDIRECT = 'http://127.0.0.1:9/cb';
const newNumber = () => `+8190${String(randomInt(10_000_000, 99_999_999))}`;

describe(`SMS sign-in timing (${describeBackends()})`, () => {
  let server: RunningServer;
  let twilio: FakeTwilio;
  let issuer: string;
  let clientId: string;
  let clientSecret: string;

  beforeAll(async () => {
    twilio = new FakeTwilio();
    const base = await twilio.start();
    server = await startTestServer({
      TWILIO_ACCOUNT_SID: twilio.accountSid, TWILIO_AUTH_TOKEN: twilio.authToken, TWILIO_FROM: '+15005550006',
      TWILIO_API_BASE_URL: base, TWILIO_TIMEOUT_MS: '5000',
      // Each request below comes from its own client address (through "one proxy"), so the per-IP
      // send limit does not end the measurement early.
      TRUST_PROXY: '1',
    });
    issuer = server.services.config.issuer;
    const added = await server.services.clients.add({ client_name: 'Shop', redirect_uris: [REDIRECT], first_party: true });
    clientId = added.client_id as string;
    clientSecret = added.client_secret as string;
  });

  afterAll(async () => {
    await server?.close();
    await twilio?.close();
  });

  /** A number that belongs to an account (verified), as if added on the account page. */
  const registeredNumber = async (): Promise<string> => {
    const phone = newNumber();
    await withTransaction(server.services.db.pool, async (tx) => {
      const account = await server.services.accounts.createAccount(tx);
      await server.services.accounts.addVerifiedPhone(tx, account.id, phone);
    });
    return phone;
  };

  const phoneForm = async () => {
    const config = await discover(server, clientId, clientSecret);
    const req = await authorizationRequest(config, REDIRECT);
    const browser = new Browser();
    const login = await browser.follow(req.url.href);
    const uid = /\/interaction\/([\w-]+)\//.exec(login.body)?.[1] as string;
    return { browser, uid, csrf: csrfOf(login.body) };
  };
  let clientCounter = 0;
  const submit = async (form: Awaited<ReturnType<typeof phoneForm>>, phone: string) => {
    const started = performance.now();
    const res = await fetch(`${issuer}/interaction/${form.uid}/phone`, {
      method: 'POST', redirect: 'manual',
      headers: {
        cookie: form.browser.jar.header(), 'content-type': 'application/x-www-form-urlencoded',
        'x-forwarded-for': `198.19.${Math.floor(clientCounter / 250) % 250}.${(clientCounter++ % 250) + 1}`,
      },
      body: new URLSearchParams({ _csrf: form.csrf, phone }).toString(),
    });
    await res.arrayBuffer();
    return { status: res.status, location: res.headers.get('location'), ms: performance.now() - started };
  };

  it('answers for a known number while Twilio has not answered yet, exactly as for an unknown number', async () => {
    const known = await registeredNumber();
    const form = await phoneForm();
    twilio.failNext.push('hang');
    const before = twilio.requests.length;
    const knownAnswer = await submit(form, known);
    // The answer is there; Twilio is asked (in the background) and never answers this one.
    await twilio.requestsReceived(before + 1);
    expect(twilio.requests.at(-1)?.form.To).toBe(known);
    const unknownAnswer = await submit(form, newNumber());
    expect({ status: knownAnswer.status, location: knownAnswer.location }).toEqual({ status: 303, location: `/interaction/${form.uid}/sms-code` });
    expect({ status: unknownAnswer.status, location: unknownAnswer.location }).toEqual({ status: 303, location: `/interaction/${form.uid}/sms-code` });
  });

  it('takes no longer for a known number than for an unknown one, even when Twilio is slow (medians of several tries)', async () => {
    const tries = 5;
    const known = await Promise.all(Array.from({ length: tries }, () => registeredNumber()));
    const form = await phoneForm();
    // A slow carrier: a sign-in that waited for Twilio would be slower by at least this much.
    twilio.answerDelayMs = 1500;
    try {
      const knownTimes: number[] = [];
      const unknownTimes: number[] = [];
      for (let i = 0; i < tries; i++) {
        const k = await submit(form, known[i] as string);
        const u = await submit(form, newNumber());
        expect([k.status, u.status]).toEqual([303, 303]);
        knownTimes.push(k.ms);
        unknownTimes.push(u.ms);
      }
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
      // Generous on a busy machine: half the carrier's delay. Waiting for Twilio would exceed it.
      expect(median(knownTimes) - median(unknownTimes)).toBeLessThan(twilio.answerDelayMs / 2);
      // And every known number did get its SMS, after the answer.
      for (const phone of known) await expect(twilio.nextMessageTo(phone)).resolves.toMatchObject({ to: phone });
    } finally {
      twilio.answerDelayMs = 0;
    }
  });
});
