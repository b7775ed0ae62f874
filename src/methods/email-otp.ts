import type { EmailAddress } from '../accounts/email-address.js';
import type { Mailer } from '../delivery/mailer.js';
import { translator, type Locale } from '../i18n/index.js';
import type { RateLimitRule } from '../limits/rate-limiter.js';
import { CODE_TTL_SECONDS } from './one-time-code.js';
import { DeliveryFailed } from '../delivery/code-sender.js';
import { OneTimeCodeMethod, type CodeStart, type OneTimeCodeDeps } from './one-time-code-method.js';

export const EMAIL_SEND_LIMITS = {
  perAddress: { name: 'email-otp:address', limit: 5, windowSeconds: 15 * 60 },
  perAddressDaily: { name: 'email-otp:address-day', limit: 20, windowSeconds: 24 * 3600 },
  perIp: { name: 'email-otp:ip', limit: 30, windowSeconds: 15 * 60 },
} satisfies Record<string, RateLimitRule>;

export interface EmailOtpDeps extends OneTimeCodeDeps {
  mailer: Mailer;
}

/**
 * Email one-time code. The mail carries the code and nothing else that could sign someone in if it
 * were forwarded (no link).
 */
export class EmailOtpMethod extends OneTimeCodeMethod {
  constructor(deps: EmailOtpDeps, purpose = 'login') {
    super(deps, {
      channel: 'email',
      method: 'email_otp',
      amr: ['otp'],
      sender: {
        kind: 'tsunagi-code',
        async send(to, code, locale) {
          const t = translator(locale);
          try {
            await deps.mailer.send({ to, subject: t('mail.code.subject', { code }), text: t('mail.code.body', { code, minutes: CODE_TTL_SECONDS / 60 }) });
          } catch (err) {
            throw new DeliveryFailed('unavailable', err);
          }
        },
      },
      limits: (target, ip) => [
        [EMAIL_SEND_LIMITS.perAddress, target.toLowerCase()],
        [EMAIL_SEND_LIMITS.perAddressDaily, target.toLowerCase()],
        [EMAIL_SEND_LIMITS.perIp, ip],
      ],
      subject: (target) => ({ kind: 'email', address: target, key: target.toLowerCase() }),
    }, purpose);
  }

  start(input: { interactionUid: string; email: EmailAddress; ip: string; locale: Locale; accountId?: string | null }): Promise<CodeStart> {
    return this.startFor({ binding: input.interactionUid, target: input.email.address, ip: input.ip, locale: input.locale, accountId: input.accountId });
  }
}
