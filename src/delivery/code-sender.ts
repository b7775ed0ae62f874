// What a code method needs from a channel (SMS here; mail has its own sender): the senders in this
// folder implement it, so the type lives with them rather than with the methods that call it.
import type { Locale } from '../i18n/index.js';

/** Why a code could not be delivered, in words a person can act on. */
export type DeliveryProblem = 'unavailable' | 'invalid_recipient' | 'unreachable' | 'provider_busy';

export class DeliveryFailed extends Error {
  constructor(readonly problem: DeliveryProblem, cause?: unknown) {
    super(`the code could not be delivered (${problem})`, { cause });
    this.name = 'DeliveryFailed';
  }
}

/** How codes reach a channel: Tsunagi makes the code and a sender delivers it, or a provider (Twilio Verify) owns the code. */
export type CodeSender =
  | { kind: 'tsunagi-code'; send(to: string, code: string, locale: Locale, validSeconds: number): Promise<void> }
  | { kind: 'provider-code'; start(to: string, locale: Locale): Promise<void>; check(to: string, code: string): Promise<boolean> };
