import { randomBytes, randomUUID } from 'node:crypto';
import { parseEmailAddress, type EmailAddress } from '../../src/accounts/email-address.js';
import { OtpChallengeStore } from '../../src/accounts/otp-challenge-store.js';
import type { Database } from '../../src/db/database.js';
import type { Mailer, OutgoingMail } from '../../src/delivery/mailer.js';
import { PostgresRateLimiter } from '../../src/limits/postgres-rate-limiter.js';
import { EmailOtpMethod } from '../../src/methods/email-otp.js';
import { openTestDatabase, uniqueEmail } from '../support/harness.js';

class FakeMailer implements Mailer {
  readonly sent: OutgoingMail[] = [];
  failing = false;

  async send(mail: OutgoingMail): Promise<void> {
    if (this.failing) throw new Error('mail server unreachable');
    this.sent.push(mail);
  }

  lastCode(): string {
    const m = /\b(\d{6})\b/.exec(this.sent.at(-1)?.text ?? '');
    if (!m?.[1]) throw new Error('no code in the last mail');
    return m[1];
  }
}

let db: Database;
beforeAll(async () => { db = await openTestDatabase(); });
afterAll(async () => { await db.close(); });

function setup(start = new Date()) {
  let clock = start;
  const mailer = new FakeMailer();
  const method = new EmailOtpMethod({
    challenges: new OtpChallengeStore(db.pool),
    limiter: new PostgresRateLimiter(db.pool),
    mailer,
    pepper: randomBytes(16).toString('hex'),
    now: () => clock,
  });
  const email = parseEmailAddress(uniqueEmail('otp')) as EmailAddress;
  // A fresh IP per test: the per-IP limit is shared by every test using the same database.
  const ip = `198.51.${Math.floor(Math.random() * 255)}.${Math.floor(Math.random() * 255)}-${randomUUID()}`;
  return {
    method, mailer, email, ip,
    advance(seconds: number) { clock = new Date(clock.getTime() + seconds * 1000); },
    send(interactionUid: string, to: EmailAddress = email) {
      return method.start({ interactionUid, email: to, ip, locale: 'en' });
    },
  };
}

const wrongCodeFor = (code: string) => String((Number(code) + 1) % 1_000_000).padStart(6, '0');

describe('EmailOtpMethod', () => {
  it('turns the right code into a proof bound to the interaction, with amr otp', async () => {
    const t = setup();
    const uid = `int-${randomUUID()}`;
    const started = await t.send(uid);
    expect(started.ok).toBe(true);
    const result = await t.method.verify({ interactionUid: uid, code: t.mailer.lastCode() });
    expect(result).toEqual({
      ok: true,
      proof: {
        interactionUid: uid,
        method: 'email_otp',
        amr: ['otp'],
        subject: { kind: 'email', address: t.email.address, key: t.email.key },
        at: expect.any(Date),
      },
    });
  });

  it('mails the code to the address, with the code and no link in the text', async () => {
    const t = setup();
    await t.send(`int-${randomUUID()}`);
    expect(t.mailer.sent).toHaveLength(1);
    const mail = t.mailer.sent[0] as OutgoingMail;
    const code = t.mailer.lastCode();
    expect(mail.to).toBe(t.email.address);
    expect(mail.text).toContain(code);
    expect(mail.subject).toContain(code);
    expect(mail.text).not.toMatch(/https?:|www\.|:\/\//i);
    expect(mail.text).toMatch(/10 minutes/);
  });

  it('writes the mail in the requested language', async () => {
    const t = setup();
    await t.method.start({ interactionUid: `int-${randomUUID()}`, email: t.email, ip: t.ip, locale: 'ja' });
    expect(t.mailer.sent[0]?.subject).toMatch(/^Tsunagi の確認コード: \d{6}$/);
  });

  it('accepts a code only once', async () => {
    const t = setup();
    const uid = `int-${randomUUID()}`;
    await t.send(uid);
    const code = t.mailer.lastCode();
    expect((await t.method.verify({ interactionUid: uid, code })).ok).toBe(true);
    const again = await t.method.verify({ interactionUid: uid, code });
    expect(again.ok).toBe(false);
    expect(['already_used', 'no_code']).toContain(!again.ok && again.reason);
  });

  it('accepts the code until ten minutes have passed', async () => {
    const t = setup();
    const uid = `int-${randomUUID()}`;
    await t.send(uid);
    t.advance(10 * 60 - 1);
    expect((await t.method.verify({ interactionUid: uid, code: t.mailer.lastCode() })).ok).toBe(true);
  });

  it('refuses the right code after ten minutes as expired', async () => {
    const t = setup();
    const uid = `int-${randomUUID()}`;
    await t.send(uid);
    t.advance(10 * 60);
    expect(await t.method.verify({ interactionUid: uid, code: t.mailer.lastCode() })).toEqual({ ok: false, reason: 'expired' });
    expect(await t.method.pendingTarget(uid)).toBeUndefined();
  });

  it('counts down wrong tries and refuses even the right code after five wrong ones', async () => {
    const t = setup();
    const uid = `int-${randomUUID()}`;
    await t.send(uid);
    const code = t.mailer.lastCode();
    const wrong = wrongCodeFor(code);
    const results = [];
    for (let i = 0; i < 5; i++) results.push(await t.method.verify({ interactionUid: uid, code: wrong }));
    expect(results).toEqual([
      { ok: false, reason: 'wrong_code', attemptsLeft: 4 },
      { ok: false, reason: 'wrong_code', attemptsLeft: 3 },
      { ok: false, reason: 'wrong_code', attemptsLeft: 2 },
      { ok: false, reason: 'wrong_code', attemptsLeft: 1 },
      { ok: false, reason: 'too_many_attempts' },
    ]);
    expect(await t.method.verify({ interactionUid: uid, code })).toEqual({ ok: false, reason: 'too_many_attempts' });
  });

  it('does not accept a code from another interaction', async () => {
    const t = setup();
    const x = `int-x-${randomUUID()}`;
    const y = `int-y-${randomUUID()}`;
    await t.send(x);
    const codeForX = t.mailer.lastCode();
    expect(await t.method.verify({ interactionUid: y, code: codeForX })).toEqual({ ok: false, reason: 'no_code' });

    await t.send(y);
    const codeForY = t.mailer.lastCode();
    if (codeForY !== codeForX) {
      expect(await t.method.verify({ interactionUid: y, code: codeForX })).toMatchObject({ ok: false, reason: 'wrong_code' });
    }
    // X's own code is untouched by the tries made in Y.
    const inX = await t.method.verify({ interactionUid: x, code: codeForX });
    expect(inX.ok && inX.proof.interactionUid).toBe(x);
  });

  it('only accepts the newest code of an interaction', async () => {
    const t = setup();
    const uid = `int-${randomUUID()}`;
    await t.send(uid);
    const first = t.mailer.lastCode();
    await t.send(uid);
    const second = t.mailer.lastCode();
    if (first !== second) {
      expect(await t.method.verify({ interactionUid: uid, code: first })).toMatchObject({ ok: false, reason: 'wrong_code' });
    }
    expect((await t.method.verify({ interactionUid: uid, code: second })).ok).toBe(true);
  });

  it('reports a failing mailer as delivery_failed and leaves no live code behind', async () => {
    const t = setup();
    const uid = `int-${randomUUID()}`;
    t.mailer.failing = true;
    expect(await t.send(uid)).toEqual({ ok: false, reason: 'delivery_failed', problem: 'unavailable' });
    expect(await t.method.pendingTarget(uid)).toBeUndefined();
    const { rows } = await db.pool.query('SELECT id FROM otp_challenges WHERE interaction_uid = $1', [uid]);
    expect(rows).toHaveLength(0);
    expect(await t.method.verify({ interactionUid: uid, code: '123456' })).toEqual({ ok: false, reason: 'no_code' });
  });

  it('shows the address of the live code while it is pending', async () => {
    const t = setup();
    const uid = `int-${randomUUID()}`;
    await t.send(uid);
    expect(await t.method.pendingTarget(uid)).toBe(t.email.address);
  });

  it('sends at most five codes per address in 15 minutes, then says when to retry', async () => {
    const t = setup(new Date('2031-03-03T03:00:00.000Z'));
    for (let i = 0; i < 5; i++) expect((await t.send(`int-${randomUUID()}`)).ok).toBe(true);
    const refused = await t.send(`int-${randomUUID()}`);
    expect(refused).toEqual({ ok: false, reason: 'rate_limited', retryAfterSeconds: 15 * 60 });
    expect(t.mailer.sent).toHaveLength(5);

    t.advance(10 * 60);
    const stillRefused = await t.send(`int-${randomUUID()}`);
    expect(stillRefused.ok === false && stillRefused.reason === 'rate_limited' && stillRefused.retryAfterSeconds).toBe(5 * 60);

    t.advance(5 * 60);
    expect((await t.send(`int-${randomUUID()}`)).ok).toBe(true);
  });

  it('limits per address regardless of how the address is capitalised', async () => {
    const t = setup();
    const shouting = parseEmailAddress(t.email.address.toUpperCase()) as EmailAddress;
    for (let i = 0; i < 5; i++) expect((await t.send(`int-${randomUUID()}`, i % 2 ? shouting : t.email)).ok).toBe(true);
    const refused = await t.send(`int-${randomUUID()}`, shouting);
    expect(refused.ok === false && refused.reason).toBe('rate_limited');
    expect(refused.ok === false && refused.reason === 'rate_limited' && refused.retryAfterSeconds).toBeGreaterThan(0);
  });

  it('never compares more than five guesses, even when twenty arrive at once', async () => {
    const t = setup();
    const uid = `int-${randomUUID()}`;
    const started = await t.send(uid);
    if (!started.ok) throw new Error('start failed');
    const code = t.mailer.lastCode();
    const wrong = wrongCodeFor(code);
    const results = await Promise.all(Array.from({ length: 20 }, () => t.method.verify({ interactionUid: uid, code: wrong })));
    expect(results.every((r) => !r.ok)).toBe(true);
    expect(results.filter((r) => !r.ok && r.reason === 'wrong_code').length).toBeLessThanOrEqual(4);
    const { rows } = await db.pool.query<{ attempts: number }>('SELECT attempts FROM otp_challenges WHERE id = $1', [started.challengeId]);
    expect(rows[0]?.attempts).toBe(5);
    expect(await t.method.verify({ interactionUid: uid, code })).toEqual({ ok: false, reason: 'too_many_attempts' });
  });

  it('stores only a hash of the code', async () => {
    const t = setup();
    const uid = `int-${randomUUID()}`;
    const started = await t.send(uid);
    if (!started.ok) throw new Error('start failed');
    const { rows } = await db.pool.query<{ code_hash: string; target: string }>('SELECT code_hash, target FROM otp_challenges WHERE id = $1', [started.challengeId]);
    expect(rows[0]?.target).toBe(t.email.address);
    expect(rows[0]?.code_hash).not.toContain(t.mailer.lastCode());
    expect(rows[0]?.code_hash.length).toBeGreaterThan(20);
  });
});
