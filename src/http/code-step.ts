import type { Context } from 'koa';
import { maskedEmail, maskEmail } from '../accounts/email-address.js';
import { maskedPhone, maskPhone } from '../accounts/phone-number.js';
import { RETRY_AFTER_SECONDS } from '../failures/dependency.js';
import type { CodeSendRefusal, CodeStep, CodeVerifyRefusal } from '../flows/code-step.js';
import type { CodeStart } from '../methods/one-time-code-method.js';
import type { DeliveryProblem } from '../delivery/code-sender.js';
import type { Metrics } from '../web/metrics.js';
import type { PageState } from './page.js';

/**
 * The one mapping of a code step's outcomes (src/flows/code-step.ts) to an HTTP status and a message
 * key, for all seven places that send and verify codes:
 *
 *   rate_limited       -> 429, Retry-After: the limiter's wait; "<screen>.error.rate_limited" (+ minutes)
 *   delivery_failed    -> 503, Retry-After: RETRY_AFTER_SECONDS; the screen's delivery message
 *   bad_format         -> 400, code.error.format
 *   wrong_code         -> 400, code.error.wrong_code (+ attempts left; the form stays)
 *   expired, too_many_attempts, already_used, no_code
 *                      -> 400, code.error.<reason> ("Send a new code" becomes the primary action)
 *
 * The screen a send refusal is shown on words it in its own way (the login page, the phone page, the
 * link offer's error page); the status and Retry-After never differ.
 */
export type SendScreen = 'login' | 'phone' | 'link';

const SEND_REFUSAL_MESSAGES: Record<SendScreen, { rate_limited: string; delivery_failed: (problem: DeliveryProblem) => string }> = {
  login: { rate_limited: 'login.error.rate_limited', delivery_failed: () => 'login.error.delivery_failed' },
  phone: { rate_limited: 'phone.error.rate_limited', delivery_failed: (problem) => `phone.error.${problem}` },
  link: { rate_limited: 'upstream.error.code_rate_limited', delivery_failed: () => 'upstream.error.code_not_sent' },
};

/** A refused send: sets the status and Retry-After, and gives the page its message. */
export function refuseSend(ctx: Context, refused: CodeSendRefusal, screen: SendScreen): PageState & { error: string } {
  const messages = SEND_REFUSAL_MESSAGES[screen];
  if (refused.reason === 'rate_limited') {
    ctx.status = 429;
    ctx.set('Retry-After', String(refused.retryAfterSeconds));
    return { error: messages.rate_limited, retryAfterMinutes: Math.ceil(refused.retryAfterSeconds / 60) };
  }
  ctx.status = 503;
  ctx.set('Retry-After', String(RETRY_AFTER_SECONDS));
  return { error: messages.delivery_failed(refused.problem) };
}

/** A refused code: sets the status and gives the code page its message. */
export function refuseCode(ctx: Context, refused: CodeVerifyRefusal): PageState {
  ctx.status = 400;
  if (refused.reason === 'bad_format') return { error: 'code.error.format' };
  return codeError(refused);
}

/**
 * The code page's message for a failed verification. A code that can no longer be used makes
 * "Send a new code" the page's primary action (codeSpent).
 */
export function codeError(v: Exclude<CodeVerifyRefusal, { reason: 'bad_format' }>): PageState {
  return {
    error: `code.error.${v.reason}`,
    attemptsLeft: v.reason === 'wrong_code' ? v.attemptsLeft : undefined,
    canRetry: v.reason === 'wrong_code',
    codeSpent: v.reason !== 'wrong_code',
  };
}

/** Counts a send (tsunagi_otp_sends_total). */
export function countSend(metrics: Pick<Metrics, 'otpSends'>, step: Pick<CodeStep, 'channel'>, started: CodeStart): void {
  metrics.otpSends.inc({ channel: step.channel, result: started.ok ? 'sent' : started.reason });
}

/** What the code page (views/code.eta) needs to know about one place's code step. */
export interface CodeScreen {
  channel: 'email' | 'sms';
  /** Where the code went: an address, or an E.164 number. */
  target: string;
  /** Show the address masked (the link offer: the account's address, which this browser did not type). */
  maskAddress?: boolean;
  action: string;
  resend: { action: string; field?: string; value?: string };
  back: { href: string; key?: string };
  uid?: string;
  titleKey?: string;
  titleParams?: Record<string, string>;
  leadKey?: string;
  languageReturnTo?: string;
}

/** The props of views/code.eta, built one way for every code step. */
export function codePage(screen: CodeScreen, state: PageState = {}): Record<string, unknown> {
  const shown = screen.channel === 'sms'
    ? { target: maskPhone(screen.target), maskedTarget: maskedPhone(screen.target), titleKey: 'code.sms.title', leadKey: 'code.sms.lead' }
    : screen.maskAddress ? { target: maskEmail(screen.target), maskedTarget: maskedEmail(screen.target) } : { target: screen.target };
  return {
    ...(screen.uid ? { uid: screen.uid } : {}),
    ...shown,
    ...(screen.titleKey ? { titleKey: screen.titleKey } : {}),
    ...(screen.titleParams ? { titleParams: screen.titleParams } : {}),
    ...(screen.leadKey ? { leadKey: screen.leadKey } : {}),
    action: screen.action,
    resendAction: screen.resend.action,
    ...(screen.resend.field ? { resendField: screen.resend.field, resendValue: screen.resend.value } : {}),
    ...(screen.languageReturnTo ? { languageReturnTo: screen.languageReturnTo } : {}),
    backHref: screen.back.href,
    ...(screen.back.key ? { backKey: screen.back.key } : {}),
    ...state,
  };
}
