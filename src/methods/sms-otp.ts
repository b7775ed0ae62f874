import type { Locale } from '../i18n/index.js';
import type { RateLimitRule } from '../limits/rate-limiter.js';
import type { CodeSender } from '../delivery/code-sender.js';
import { OneTimeCodeMethod, type CodeStart, type OneTimeCodeDeps } from './one-time-code-method.js';

// Stricter than email: every SMS costs money, and SMS pumping fraud sends to premium numbers in bulk.
export const SMS_SEND_LIMITS = {
  perNumber: { name: 'sms-otp:number', limit: 3, windowSeconds: 15 * 60 },
  perNumberDaily: { name: 'sms-otp:number-day', limit: 10, windowSeconds: 24 * 3600 },
  perAccount: { name: 'sms-otp:account', limit: 10, windowSeconds: 3600 },
  perIp: { name: 'sms-otp:ip', limit: 10, windowSeconds: 15 * 60 },
} satisfies Record<string, RateLimitRule>;

/** SMS one-time code to an E.164 number (Twilio Messages with Tsunagi's code, or Twilio Verify's own). */
export class SmsOtpMethod extends OneTimeCodeMethod {
  constructor(deps: OneTimeCodeDeps & { sender: CodeSender }, purpose = 'login') {
    super(deps, {
      channel: 'sms',
      method: 'sms_otp',
      amr: ['sms'],
      sender: deps.sender,
      limits: (phone, ip, accountId) => [
        [SMS_SEND_LIMITS.perNumber, phone],
        [SMS_SEND_LIMITS.perNumberDaily, phone],
        [SMS_SEND_LIMITS.perIp, ip],
        ...(accountId ? [[SMS_SEND_LIMITS.perAccount, accountId] as [RateLimitRule, string]] : []),
      ],
      subject: (phone) => ({ kind: 'phone', phone }),
    }, purpose);
  }

  start(input: { binding: string; phone: string; ip: string; locale: Locale; accountId?: string | null }): Promise<CodeStart> {
    return this.startFor({ binding: input.binding, target: input.phone, ip: input.ip, locale: input.locale, accountId: input.accountId });
  }
}
