import type { Locale } from '../i18n/index.js';
import type { CodeStart, CodeVerification, OneTimeCodeMethod } from '../methods/one-time-code-method.js';
import type { DeliveryProblem } from '../delivery/code-sender.js';
import { parseCode } from '../methods/one-time-code.js';
import type { Proof } from '../accounts/proof.js';

/**
 * What a code is bound to. Each use has its own binding, so a code sent for one never proves
 * anything in another: a sign-in code cannot complete a link, a link code cannot add an email.
 */
export type CodeBinding =
  /** Sign-in by email or SMS code on the login page. */
  | { kind: 'login'; interactionUid: string }
  /** Proving the account a pending link offer is for (src/flows/link.ts). */
  | { kind: 'link'; interactionUid: string }
  /** The address a client requires (src/flows/require-email.ts). */
  | { kind: 'require_email'; interactionUid: string }
  /** Adding an address or a number on the account page, bound to that account-page session. */
  | { kind: 'account'; sessionUid: string };

/** The key the challenge store files a binding's codes under (stable: live challenges carry it). */
export function bindingKey(binding: CodeBinding): string {
  switch (binding.kind) {
    case 'login': return binding.interactionUid;
    case 'link': return `link:${binding.interactionUid}`;
    case 'require_email': return `require-email:${binding.interactionUid}`;
    case 'account': return `account:${binding.sessionUid}`;
  }
}

/** A send that did not happen. */
export type CodeSendRefusal =
  | { ok: false; reason: 'rate_limited'; retryAfterSeconds: number }
  | { ok: false; reason: 'delivery_failed'; problem: DeliveryProblem };

/** A submitted code that proved nothing (`bad_format`: not six digits, nothing was counted). */
export type CodeVerifyRefusal = Exclude<CodeVerification, { ok: true }> | { ok: false; reason: 'bad_format' };

export interface CodeRequest { ip: string; locale: Locale }

/**
 * The one code step of every flow ("send a code to X, verify it, then do Y", Kratos's code strategy):
 * sign-in by email and by SMS, link by email and by SMS, require-email, and the account page's add
 * email and add phone all send and verify through it. What differs is only the binding, the target
 * and Y (the flow function the route calls with the proof). Its outcomes (sent, rate-limited,
 * delivery failed, bad format, wrong code, expired, too many attempts, already used, no code) map
 * to a status and a message in one place: src/http/code-step.ts.
 */
export class CodeStep {
  constructor(readonly channel: 'email' | 'sms', private readonly method: OneTimeCodeMethod) {}

  /** Sends a code to `target` (an address or an E.164 number) for `binding`. */
  send(binding: CodeBinding, target: string, request: CodeRequest, accountId?: string | null): Promise<CodeStart> {
    return this.method.send({ binding: bindingKey(binding), target, ip: request.ip, locale: request.locale, accountId });
  }

  /** A send that does not tell a known target from an unknown one (OneTimeCodeMethod.startUndisclosed). */
  sendUndisclosed(binding: CodeBinding, target: string, request: CodeRequest, accountId: string | null, report: (outcome: 'sent' | DeliveryProblem) => void): Promise<CodeStart> {
    return this.method.startUndisclosed({ binding: bindingKey(binding), target, ip: request.ip, locale: request.locale, accountId }, report);
  }

  /** Parses what the person typed and verifies it; the proof is bound to `binding`. */
  async verify(binding: CodeBinding, typed: unknown): Promise<CodeVerification | CodeVerifyRefusal> {
    const code = parseCode(typed);
    if (!code) return { ok: false, reason: 'bad_format' };
    return this.method.verify({ interactionUid: bindingKey(binding), code });
  }

  /** Verifies, then does Y with the proof; a refusal is handed back untouched. */
  async verifyThen<T>(binding: CodeBinding, typed: unknown, then: (proof: Proof) => Promise<T>): Promise<{ ok: true; value: T } | CodeVerifyRefusal> {
    const verified = await this.verify(binding, typed);
    if (!verified.ok) return verified;
    return { ok: true, value: await then(verified.proof) };
  }

  /** Where the binding's live code went (undefined once it expired). */
  pendingTarget(binding: CodeBinding): Promise<string | undefined> {
    return this.method.pendingTarget(bindingKey(binding));
  }

  /** Where the binding's newest unused code went, live or expired, and when another may be sent. */
  latestTarget(binding: CodeBinding) {
    return this.method.latestTarget(bindingKey(binding));
  }

  /** The target of the binding's last code, even once used (to fill the form in again). */
  lastTarget(binding: CodeBinding): Promise<string | undefined> {
    return this.method.lastTarget(bindingKey(binding));
  }
}
