import type { Context } from 'koa';
import { bindingKey } from '../../src/flows/code-step.js';
import { codePage, refuseCode, refuseSend, type SendScreen } from '../../src/http/code-step.js';
import { FORMS, PASSKEY_BODIES, parseForm } from '../../src/http/forms.js';

/** Just what the mapping touches of a koa Context: the status, the headers it sets, the body. */
function fakeContext(body?: unknown) {
  const headers: Record<string, string> = {};
  const ctx = { status: 200, request: { body }, set: (name: string, value: string) => { headers[name.toLowerCase()] = value; } };
  return { ctx: ctx as unknown as Context, headers, status: () => ctx.status };
}

describe('the one mapping of code-step outcomes', () => {
  it.each<SendScreen>(['login', 'phone', 'link'])('answers a rate-limited send on the %s screen with 429 and Retry-After', (screen) => {
    const { ctx, headers, status } = fakeContext();
    const state = refuseSend(ctx, { ok: false, reason: 'rate_limited', retryAfterSeconds: 125 }, screen);
    expect(status()).toBe(429);
    expect(headers['retry-after']).toBe('125');
    expect(state).toMatchObject({ retryAfterMinutes: 3 });
    expect(state.error).toMatch(/rate_limited$/);
  });

  it.each<SendScreen>(['login', 'phone', 'link'])('answers a failed delivery on the %s screen with 503 and Retry-After', (screen) => {
    const { ctx, headers, status } = fakeContext();
    const state = refuseSend(ctx, { ok: false, reason: 'delivery_failed', problem: 'unreachable' }, screen);
    expect(status()).toBe(503);
    expect(Number(headers['retry-after'])).toBeGreaterThan(0);
    expect(state.error).toBe({ login: 'login.error.delivery_failed', phone: 'phone.error.unreachable', link: 'upstream.error.code_not_sent' }[screen]);
  });

  it('answers every refused code with 400; only a wrong code keeps the form', () => {
    for (const [refused, spent] of [
      [{ ok: false, reason: 'wrong_code', attemptsLeft: 2 }, false], [{ ok: false, reason: 'expired' }, true],
      [{ ok: false, reason: 'too_many_attempts' }, true], [{ ok: false, reason: 'already_used' }, true],
    ] as const) {
      const { ctx, status } = fakeContext();
      expect(refuseCode(ctx, refused)).toMatchObject({ error: `code.error.${refused.reason}`, codeSpent: spent });
      expect(status()).toBe(400);
    }
    const { ctx, status } = fakeContext();
    expect(refuseCode(ctx, { ok: false, reason: 'bad_format' })).toEqual({ error: 'code.error.format' });
    expect(status()).toBe(400);
  });

  it('keeps each use of codes in its own binding', () => {
    const keys = [
      bindingKey({ kind: 'login', interactionUid: 'u1' }), bindingKey({ kind: 'link', interactionUid: 'u1' }),
      bindingKey({ kind: 'require_email', interactionUid: 'u1' }), bindingKey({ kind: 'account', sessionUid: 'u1' }),
    ];
    expect(new Set(keys).size).toBe(4);
    expect(keys).toEqual(['u1', 'link:u1', 'require-email:u1', 'account:u1']);
  });

  it('masks a number on the code page, and an address only where asked', () => {
    const base = { action: '/a', resend: { action: '/r' }, back: { href: '/b' } };
    expect(codePage({ ...base, channel: 'sms', target: '+819012345678' })).toMatchObject({ titleKey: 'code.sms.title', target: expect.stringContaining('5678') });
    expect(codePage({ ...base, channel: 'sms', target: '+819012345678' }).target).not.toContain('9012');
    expect(codePage({ ...base, channel: 'email', target: 'kate@example.test' }).target).toBe('kate@example.test');
    expect(codePage({ ...base, channel: 'email', target: 'kate@example.test', maskAddress: true }).target).not.toContain('kate');
  });
});

describe('form schemas at the edge', () => {
  it('reads a repeated field, a non-string or a missing body as an absent field, never throwing', () => {
    expect(parseForm(fakeContext({ email: ['a@example.test', 'b@example.test'] }).ctx, FORMS.email)).toEqual({ email: undefined });
    expect(parseForm(fakeContext({ code: { nested: 1 } }).ctx, FORMS.code)).toEqual({ code: undefined });
    expect(parseForm(fakeContext(undefined).ctx, FORMS.phone)).toEqual({});
    expect(parseForm(fakeContext([1, 2]).ctx, FORMS.linkEmail)).toEqual({});
    expect(parseForm(fakeContext({ email_key: 'k', other: 'x' }).ctx, FORMS.emailKey)).toEqual({ email_key: 'k' });
  });

  it('leaves the WebAuthn response to its own parser', () => {
    expect(parseForm(fakeContext({ response: { id: 'x' }, name: 7 }).ctx, PASSKEY_BODIES.registration)).toEqual({ response: { id: 'x' }, name: 7 });
    expect(parseForm(fakeContext({}).ctx, PASSKEY_BODIES.authentication)).toEqual({});
  });
});
