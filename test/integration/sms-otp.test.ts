import { randomBytes, randomUUID } from 'node:crypto';
import { AccountStore } from '../../src/accounts/account-store.js';
import { OtpChallengeStore } from '../../src/accounts/otp-challenge-store.js';
import { parsePhoneNumber, maskPhone } from '../../src/accounts/phone-number.js';
import { withTransaction, type Database } from '../../src/db/database.js';
import { PostgresRateLimiter } from '../../src/limits/postgres-rate-limiter.js';
import type { RateLimiter, RateLimitRule } from '../../src/limits/rate-limiter.js';
import { DeliveryFailed, type CodeSender } from '../../src/delivery/code-sender.js';
import { SMS_SEND_LIMITS, SmsOtpMethod } from '../../src/methods/sms-otp.js';
import { twilioProblem } from '../../src/delivery/sms.js';
import { openTestDatabase } from '../support/harness.js';

let db: Database;
beforeAll(async () => { db = await openTestDatabase(); });
afterAll(async () => { await db.close(); });

class RecordingSender {
  readonly sent: Array<{ to: string; code: string }> = [];
  failWith: DeliveryFailed | undefined;
  readonly sender: CodeSender = {
    kind: 'tsunagi-code',
    send: async (to, code) => {
      if (this.failWith) throw this.failWith;
      this.sent.push({ to, code });
    },
  };
}

function setup() {
  let clock = new Date();
  const rec = new RecordingSender();
  const method = new SmsOtpMethod({
    challenges: new OtpChallengeStore(db.pool), limiter: new PostgresRateLimiter(db.pool),
    pepper: randomBytes(16).toString('hex'), sender: rec.sender, now: () => clock,
  });
  const phone = `+8190${String(Math.floor(Math.random() * 1e8)).padStart(8, '0')}`;
  const ip = `ip-${randomUUID()}`;
  return { method, rec, phone, ip, advance(s: number) { clock = new Date(clock.getTime() + s * 1000); } };
}

describe('SmsOtpMethod', () => {
  it('proves the number with amr sms, bound to the binding that asked', async () => {
    const t = setup();
    const uid = `int-${randomUUID()}`;
    expect((await t.method.start({ binding: uid, phone: t.phone, ip: t.ip, locale: 'en' })).ok).toBe(true);
    const code = t.rec.sent[0]?.code as string;
    expect((await t.method.verify({ interactionUid: `int-${randomUUID()}`, code })).ok).toBe(false);
    const ok = await t.method.verify({ interactionUid: uid, code });
    expect(ok).toEqual({ ok: true, proof: expect.objectContaining({ interactionUid: uid, method: 'sms_otp', amr: ['sms'], subject: { kind: 'phone', phone: t.phone } }) });
    expect(await t.method.verify({ interactionUid: uid, code })).toEqual({ ok: false, reason: 'no_code' });
  });

  it('expires codes after 10 minutes', async () => {
    const t = setup();
    const uid = `int-${randomUUID()}`;
    await t.method.start({ binding: uid, phone: t.phone, ip: t.ip, locale: 'en' });
    t.advance(601);
    expect(await t.method.verify({ interactionUid: uid, code: t.rec.sent[0]?.code as string })).toEqual({ ok: false, reason: 'expired' });
  });

  it('limits sends per number (3 per 15 minutes) and per day (10), before anything is sent', async () => {
    const t = setup();
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await t.method.start({ binding: `int-${randomUUID()}`, phone: t.phone, ip: `ip-${randomUUID()}`, locale: 'en' }));
    expect(results.map((r) => r.ok)).toEqual([true, true, true, false]);
    expect(t.rec.sent).toHaveLength(3);
    expect(results[3]).toEqual({ ok: false, reason: 'rate_limited', retryAfterSeconds: expect.any(Number) });
  });

  it('caps a number at 10 SMS a day even when every 15-minute window is respected', async () => {
    const t = setup();
    // Start just after a UTC day boundary so that the six 15-minute windows below stay in one day.
    const dayMs = 24 * 3600 * 1000;
    t.advance((Math.ceil(Date.now() / dayMs) * dayMs + 60_000 - Date.now()) / 1000);
    let allowed = 0;
    for (let window = 0; window < 6; window++) {
      for (let i = 0; i < 3; i++) {
        const r = await t.method.start({ binding: `int-${randomUUID()}`, phone: t.phone, ip: `ip-${randomUUID()}`, locale: 'en' });
        if (r.ok) allowed++;
      }
      t.advance(SMS_SEND_LIMITS.perNumber.windowSeconds);
    }
    expect(allowed).toBe(SMS_SEND_LIMITS.perNumberDaily.limit);
    expect(t.rec.sent).toHaveLength(allowed);
  });

  it('limits sends per account across numbers', async () => {
    const t = setup();
    const accountId = randomUUID();
    await db.pool.query('INSERT INTO accounts (id) VALUES ($1)', [accountId]);
    let ok = 0;
    for (let i = 0; i < 12; i++) {
      const phone = `+8180${String(Math.floor(Math.random() * 1e8)).padStart(8, '0')}`;
      const r = await t.method.start({ binding: `int-${randomUUID()}`, phone, ip: `ip-${randomUUID()}`, locale: 'en', accountId });
      if (r.ok) ok++;
    }
    expect(ok).toBe(SMS_SEND_LIMITS.perAccount.limit);
  });

  it('reports the delivery problem and leaves no live code when sending fails', async () => {
    const t = setup();
    const uid = `int-${randomUUID()}`;
    t.rec.failWith = new DeliveryFailed('invalid_recipient');
    expect(await t.method.start({ binding: uid, phone: t.phone, ip: t.ip, locale: 'en' })).toEqual({ ok: false, reason: 'delivery_failed', problem: 'invalid_recipient' });
    expect(await t.method.pendingTarget(uid)).toBeUndefined();
  });

  it('answers for an unknown number with a live challenge no code can satisfy, and sends nothing', async () => {
    const t = setup();
    const uid = `int-${randomUUID()}`;
    const reports: string[] = [];
    expect((await t.method.startUndisclosed({ binding: uid, target: t.phone, ip: t.ip, locale: 'en', accountId: null }, (o) => reports.push(o))).ok).toBe(true);
    expect(t.rec.sent).toHaveLength(0);
    expect(reports).toEqual([]);
    expect(await t.method.pendingTarget(uid)).toBe(t.phone);
    for (let i = 0; i < 5; i++) expect((await t.method.verify({ interactionUid: uid, code: String(i).padStart(6, '0') })).ok).toBe(false);
    expect(await t.method.verify({ interactionUid: uid, code: '999999' })).toEqual({ ok: false, reason: 'too_many_attempts' });
  });
});

describe('SMS sign-in takes the same steps whether or not the number has an account (issue 9 section 7)', () => {
  /** A limiter that remembers which rules each start counted, in order. */
  class RecordingLimiter implements RateLimiter {
    readonly hits: string[] = [];
    constructor(private readonly inner: RateLimiter) {}
    hit(rule: RateLimitRule, subject: string, now?: Date) {
      this.hits.push(rule.name);
      return this.inner.hit(rule, subject, now);
    }
  }
  /** A sender whose delivery finishes only when the test says so. */
  const heldSender = () => {
    const sent: Array<{ to: string; code: string }> = [];
    let release!: (failure?: DeliveryFailed) => void;
    const held = new Promise<DeliveryFailed | undefined>((resolve) => { release = resolve; });
    const sender: CodeSender = {
      kind: 'tsunagi-code',
      send: async (to, code) => {
        sent.push({ to, code });
        const failure = await held;
        if (failure) throw failure;
      },
    };
    return { sender, sent, release };
  };
  const setupHeld = () => {
    const limiter = new RecordingLimiter(new PostgresRateLimiter(db.pool));
    const held = heldSender();
    const method = new SmsOtpMethod({ challenges: new OtpChallengeStore(db.pool), limiter, pepper: randomBytes(16).toString('hex'), sender: held.sender });
    const phone = () => `+8190${String(Math.floor(Math.random() * 1e8)).padStart(8, '0')}`;
    return { method, limiter, held, phone, ip: `ip-${randomUUID()}` };
  };
  /** What the background delivery reported, and a promise that settles at its first report. */
  const reportLog = () => {
    const reports: string[] = [];
    let settle!: () => void;
    const reported = new Promise<void>((resolve) => { settle = resolve; });
    return { reports, reported, report: (outcome: string) => { reports.push(outcome); settle(); } };
  };
  const newAccountId = async () => (await withTransaction(db.pool, (tx) => new AccountStore(db.pool).createAccount(tx))).id;

  it('answers a known number before its SMS is delivered, then reports the delivery, and the code works', async () => {
    const t = setupHeld();
    const uid = `int-${randomUUID()}`;
    const phone = t.phone();
    const { reports, report, reported } = reportLog();
    // The sender has not finished (it waits for release()): the answer must not wait for it.
    const started = await t.method.startUndisclosed({ binding: uid, target: phone, ip: t.ip, locale: 'en', accountId: await newAccountId() }, report);
    expect(started.ok).toBe(true);
    expect(t.held.sent).toHaveLength(1);
    expect(reports).toEqual([]);
    t.held.release();
    await reported;
    expect(reports).toEqual(['sent']);
    expect((await t.method.verify({ interactionUid: uid, code: t.held.sent[0]?.code as string })).ok).toBe(true);
  });

  it('counts the same limits and stores one challenge on both paths', async () => {
    const t = setupHeld();
    const known = `int-${randomUUID()}`;
    const unknown = `int-${randomUUID()}`;
    await t.method.startUndisclosed({ binding: known, target: t.phone(), ip: t.ip, locale: 'en', accountId: await newAccountId() }, () => undefined);
    const knownHits = t.limiter.hits.splice(0);
    await t.method.startUndisclosed({ binding: unknown, target: t.phone(), ip: t.ip, locale: 'en', accountId: null }, () => undefined);
    const unknownHits = t.limiter.hits.splice(0);
    expect(unknownHits).toEqual(knownHits);
    expect(knownHits).toEqual([SMS_SEND_LIMITS.perNumber.name, SMS_SEND_LIMITS.perNumberDaily.name, SMS_SEND_LIMITS.perIp.name, SMS_SEND_LIMITS.perAccount.name]);
    const { rows } = await db.pool.query<{ interaction_uid: string }>('SELECT interaction_uid FROM otp_challenges WHERE interaction_uid = ANY($1)', [[known, unknown]]);
    expect(rows.map((r) => r.interaction_uid).sort()).toEqual([known, unknown].sort());
    t.held.release();
  });

  it('reports a failed background delivery and leaves the page in the same state as for an unknown number', async () => {
    const t = setupHeld();
    const uid = `int-${randomUUID()}`;
    const phone = t.phone();
    const { reports, report, reported } = reportLog();
    await t.method.startUndisclosed({ binding: uid, target: phone, ip: t.ip, locale: 'en', accountId: await newAccountId() }, report);
    t.held.release(new DeliveryFailed('unreachable'));
    await reported;
    expect(reports).toEqual(['unreachable']);
    expect(await t.method.pendingTarget(uid)).toBe(phone);
  });
});

describe('phone numbers and Twilio errors', () => {
  it('normalises national and international formats to E.164 with the default region', () => {
    expect(parsePhoneNumber('090-1234-5678', 'JP')).toBe('+819012345678');
    expect(parsePhoneNumber('+81 90 1234 5678', 'US')).toBe('+819012345678');
    expect(parsePhoneNumber('０９０１２３４５６７８', 'JP')).toBe('+819012345678');
    expect(parsePhoneNumber('(415) 555-2671', 'US')).toBe('+14155552671');
    expect(parsePhoneNumber('12345', 'JP')).toBeUndefined();
    expect(parsePhoneNumber('call me', 'JP')).toBeUndefined();
    expect(maskPhone('+819012345678')).toBe('•••-••••-5678');
  });

  it('maps Twilio error codes and statuses to problems a person can act on', () => {
    expect(twilioProblem({ status: 400, code: 21211 })).toBe('invalid_recipient');
    expect(twilioProblem({ status: 400, code: 21612 })).toBe('unreachable');
    expect(twilioProblem({ status: 429, code: 20429 })).toBe('provider_busy');
    expect(twilioProblem({ status: 503, code: 20500 })).toBe('unavailable');
    expect(twilioProblem(new Error('timeout'))).toBe('unavailable');
  });
});
