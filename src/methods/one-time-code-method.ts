import { randomUUID } from 'node:crypto';
import type { OtpChallengeStore, OtpChannel } from '../accounts/otp-challenge-store.js';
import { DeliveryFailed, type CodeSender, type DeliveryProblem } from '../delivery/code-sender.js';
import type { Locale } from '../i18n/index.js';
import { hitAll, type RateLimiter, type RateLimitRule } from '../limits/rate-limiter.js';
import { CODE_TTL_SECONDS, MAX_CODE_ATTEMPTS, codeMatches, generateCode, hashCode } from './one-time-code.js';
import type { Proof, ProofSubject } from '../accounts/proof.js';

export type CodeStart =
  | { ok: true; challengeId: string; expiresAt: Date }
  | { ok: false; reason: 'rate_limited'; retryAfterSeconds: number }
  | { ok: false; reason: 'delivery_failed'; problem: DeliveryProblem };

export type CodeVerification =
  | { ok: true; proof: Proof }
  | { ok: false; reason: 'no_code' | 'expired' | 'too_many_attempts' | 'already_used' }
  | { ok: false; reason: 'wrong_code'; attemptsLeft: number };

export interface OneTimeCodeDeps {
  challenges: OtpChallengeStore;
  limiter: RateLimiter;
  /** HMAC key for stored codes. */
  pepper: string;
  now?: () => Date;
}

export interface CodeChannelSpec {
  channel: OtpChannel;
  method: Proof['method'];
  amr: string[];
  sender: CodeSender;
  /** The rate-limit hits one send costs. */
  limits(target: string, ip: string, accountId: string | null): Array<[RateLimitRule, string]>;
  subject(target: string): ProofSubject;
}

const PROVIDER_OWNED = 'provider-owned-code';

/** Seconds after a send before the code page offers another: the person waits for the one on its way. */
export const RESEND_COOLDOWN_SECONDS = 30;

/**
 * A one-time code over some channel, bound to what asked for it (an interaction uid, or an
 * account-page binding) and to its target. start() sends, verify() turns the right code into a proof.
 * Codes are random, stored only as an HMAC, single use, expire, allow a few tries, and sends are
 * rate-limited before anything is sent.
 */
export class OneTimeCodeMethod {
  protected readonly now: () => Date;

  constructor(protected readonly deps: OneTimeCodeDeps, protected readonly spec: CodeChannelSpec, readonly purpose = 'login') {
    this.now = deps.now ?? (() => new Date());
  }

  /** Sends a code to `target` for `binding` (src/flows/code-step.ts is how flows call it). */
  send(input: { binding: string; target: string; ip: string; locale: Locale; accountId?: string | null }): Promise<CodeStart> {
    return this.startFor(input);
  }

  protected async startFor(input: { binding: string; target: string; ip: string; locale: Locale; accountId?: string | null }): Promise<CodeStart> {
    const now = this.now();
    const limit = await hitAll(this.deps.limiter, this.spec.limits(input.target, input.ip, input.accountId ?? null), now);
    if (!limit.allowed) return { ok: false, reason: 'rate_limited', retryAfterSeconds: limit.retryAfterSeconds };

    const id = randomUUID();
    const { sender } = this.spec;
    const code = sender.kind === 'tsunagi-code' ? generateCode() : undefined;
    const expiresAt = new Date(now.getTime() + CODE_TTL_SECONDS * 1000);
    await this.deps.challenges.create({
      id, channel: this.spec.channel, purpose: this.purpose, target: input.target, interactionUid: input.binding,
      accountId: input.accountId ?? null, codeHash: code ? hashCode(this.deps.pepper, id, code) : PROVIDER_OWNED, expiresAt,
    });
    try {
      if (sender.kind === 'tsunagi-code') await sender.send(input.target, code as string, input.locale, CODE_TTL_SECONDS);
      else await sender.start(input.target, input.locale);
    } catch (err) {
      // Nothing half-made: a code nobody received must not linger as the live one.
      await this.deps.challenges.delete(id);
      return { ok: false, reason: 'delivery_failed', problem: err instanceof DeliveryFailed ? err.problem : 'unavailable' };
    }
    return { ok: true, challengeId: id, expiresAt };
  }

  /**
   * For a target that must not be told apart from an unknown one (a number typed on the sign-in
   * page): both kinds take the same awaited steps, every limit (the account's counted against a
   * stand-in when there is no account) and one stored challenge, and the answer never waits for
   * delivery, so neither its content nor its timing says whether the target has an account. A known
   * target's code goes to the sender in the background and `report` hears how that went; an unknown
   * target gets a challenge no code can satisfy and nothing is sent. A code whose delivery failed is
   * as unusable as an unknown number's: the person asks for another, as after any lost SMS.
   */
  async startUndisclosed(
    input: { binding: string; target: string; ip: string; locale: Locale; accountId: string | null },
    report: (outcome: 'sent' | DeliveryProblem) => void,
  ): Promise<CodeStart> {
    const now = this.now();
    const limit = await hitAll(this.deps.limiter, this.spec.limits(input.target, input.ip, input.accountId ?? `no-account:${input.target}`), now);
    if (!limit.allowed) return { ok: false, reason: 'rate_limited', retryAfterSeconds: limit.retryAfterSeconds };
    const known = input.accountId !== null;
    const { sender } = this.spec;
    const id = randomUUID();
    const code = generateCode();
    const providerOwned = known && sender.kind === 'provider-code';
    const expiresAt = new Date(now.getTime() + CODE_TTL_SECONDS * 1000);
    await this.deps.challenges.create({
      id, channel: this.spec.channel, purpose: this.purpose, target: input.target, interactionUid: input.binding, accountId: input.accountId,
      codeHash: providerOwned ? PROVIDER_OWNED : hashCode(this.deps.pepper, id, known ? code : randomUUID()), expiresAt,
    });
    if (known) {
      const delivery = sender.kind === 'tsunagi-code' ? sender.send(input.target, code, input.locale, CODE_TTL_SECONDS) : sender.start(input.target, input.locale);
      delivery.then(() => report('sent'), (err: unknown) => report(err instanceof DeliveryFailed ? err.problem : 'unavailable'));
    }
    return { ok: true, challengeId: id, expiresAt };
  }

  /** Where the binding's live code went, for the code-entry page. */
  async pendingTarget(binding: string): Promise<string | undefined> {
    const latest = await this.latestTarget(binding);
    return latest && !latest.expired ? latest.target : undefined;
  }

  /**
   * Where the binding's newest unused code went, live or expired: once a code has expired the page
   * still knows (from this server-side challenge, never from the form) where a new one goes.
   */
  async latestTarget(binding: string): Promise<{ target: string; expired: boolean; resendInSeconds: number } | undefined> {
    const c = await this.deps.challenges.latestFor(binding, this.spec.channel, this.purpose);
    if (!c) return undefined;
    const sentAt = c.expiresAt.getTime() - CODE_TTL_SECONDS * 1000;
    const resendInSeconds = Math.max(0, Math.ceil((sentAt + RESEND_COOLDOWN_SECONDS * 1000 - this.now().getTime()) / 1000));
    return { target: c.target, expired: c.expiresAt <= this.now(), resendInSeconds };
  }

  /**
   * The address (or number) this binding last had a code sent to, even once used: going back to the
   * first step, or choosing "use a different email" on signup, shows it again instead of an empty field.
   */
  lastTarget(binding: string): Promise<string | undefined> {
    return this.deps.challenges.lastTargetFor(binding, this.spec.channel, this.purpose);
  }

  async verify(input: { interactionUid: string; code: string }): Promise<CodeVerification> {
    const now = this.now();
    const binding = input.interactionUid;
    const live = await this.deps.challenges.latestFor(binding, this.spec.channel, this.purpose);
    if (!live) return { ok: false, reason: 'no_code' };
    if (live.expiresAt <= now) return { ok: false, reason: 'expired' };
    const counted = await this.deps.challenges.countAttempt(live.id, MAX_CODE_ATTEMPTS, now);
    if (!counted) {
      // Lost a race: tell the person what the code's state is now, not what it was before.
      const current = await this.deps.challenges.latestFor(binding, this.spec.channel, this.purpose);
      if (current?.id === live.id && current.attempts >= MAX_CODE_ATTEMPTS) return { ok: false, reason: 'too_many_attempts' };
      return { ok: false, reason: live.attempts >= MAX_CODE_ATTEMPTS ? 'too_many_attempts' : 'already_used' };
    }
    const { sender } = this.spec;
    const matches = counted.codeHash === PROVIDER_OWNED && sender.kind === 'provider-code'
      ? await sender.check(counted.target, input.code).catch(() => false)
      : codeMatches(this.deps.pepper, counted.id, input.code, counted.codeHash);
    if (!matches) {
      const attemptsLeft = MAX_CODE_ATTEMPTS - counted.attempts;
      return attemptsLeft > 0 ? { ok: false, reason: 'wrong_code', attemptsLeft } : { ok: false, reason: 'too_many_attempts' };
    }
    if (!(await this.deps.challenges.consume(counted.id, now))) return { ok: false, reason: 'already_used' };
    return {
      ok: true,
      proof: { interactionUid: binding, method: this.spec.method, amr: this.spec.amr, subject: this.spec.subject(counted.target), at: now },
    };
  }
}
