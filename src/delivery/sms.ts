import type { Twilio } from 'twilio';
import type RequestClientNs from 'twilio/lib/base/RequestClient.js';

type RequestOptions<T> = RequestClientNs.RequestOptions<T>;
import type { Logger } from '../logger.js';
import { translator, type Locale } from '../i18n/index.js';
import { DeliveryFailed, type CodeSender, type DeliveryProblem } from './code-sender.js';
import type { DevOutbox } from './mailer.js';

export interface TwilioSettings {
  accountSid: string;
  authToken: string;
  from?: string | undefined;
  messagingServiceSid?: string | undefined;
  verifyServiceSid?: string | undefined;
  /** Another base URL for every Twilio API host (a local fake in tests, a proxy elsewhere). */
  apiBaseUrl?: string | undefined;
  timeoutMs: number;
}

type TwilioModule = typeof import('twilio');

// The SDK builds absolute URLs (https://api.twilio.com, https://verify.twilio.com, ...); its region
// and edge options cannot point it elsewhere, so a RequestClient rewrites the origin instead.
function rewritingRequestClient(twilio: TwilioModule, baseUrl: string, timeoutMs: number): RequestClientNs {
  class RewritingRequestClient extends twilio.RequestClient {
    override request<T>(opts: RequestOptions<T>) {
      const original = new URL(opts.uri);
      const base = new URL(baseUrl);
      const rewritten = new URL(`${base.pathname.replace(/\/$/, '')}${original.pathname}${original.search}`, base.origin);
      return super.request<T>({ ...opts, uri: rewritten.href });
    }
  }
  return new RewritingRequestClient({ timeout: timeoutMs });
}

// The Twilio SDK holds some 25 MB of memory once loaded, and a process without SMS (every
// development run, deployments without Twilio) never needs it: it loads at the first message.
function lazyTwilioClient(settings: TwilioSettings): () => Promise<Twilio> {
  let client: Promise<Twilio> | undefined;
  return () => {
    client ??= import('twilio').then(({ default: twilio }) => twilio(settings.accountSid, settings.authToken, {
      timeout: settings.timeoutMs,
      ...(settings.apiBaseUrl ? { httpClient: rewritingRequestClient(twilio, settings.apiBaseUrl, settings.timeoutMs) } : {}),
    }));
    return client;
  };
}

/** Twilio's error codes and statuses, as a person-facing problem. */
export function twilioProblem(err: unknown): DeliveryProblem {
  const e = err as { status?: number; code?: number | string };
  const code = typeof e.code === 'number' ? e.code : Number(e.code);
  if ([21211, 21614, 21217, 21401, 60200, 21421].includes(code)) return 'invalid_recipient';
  if ([21408, 21610, 21612, 30003, 30005, 30006, 60205, 60410].includes(code)) return 'unreachable';
  if (e.status === 429 || code === 20429 || code === 60203) return 'provider_busy';
  return 'unavailable';
}

export function twilioSender(settings: TwilioSettings, log: Logger): CodeSender {
  const client = lazyTwilioClient(settings);
  const fail = (err: unknown): never => {
    const problem = twilioProblem(err);
    // The number is personal data: log the problem and Twilio's code, not the recipient.
    log.warn({ twilioCode: (err as { code?: unknown }).code, status: (err as { status?: unknown }).status, problem }, 'twilio request failed');
    throw new DeliveryFailed(problem, err);
  };

  const { verifyServiceSid } = settings;
  if (verifyServiceSid) {
    const service = async () => (await client()).verify.v2.services(verifyServiceSid);
    return {
      kind: 'provider-code',
      async start(to, locale) {
        await (await service()).verifications.create({ to, channel: 'sms', locale }).catch(fail);
      },
      async check(to, code) {
        const result = await (await service()).verificationChecks.create({ to, code }).catch(fail);
        return result.status === 'approved';
      },
    };
  }
  return {
    kind: 'tsunagi-code',
    async send(to, code, locale, validSeconds) {
      const sender = settings.messagingServiceSid ? { messagingServiceSid: settings.messagingServiceSid } : { from: settings.from as string };
      await (await client()).messages.create({ to, body: smsBody(code, locale, validSeconds), ...sender }).catch(fail);
    },
  };
}

export function smsBody(code: string, locale: Locale, validSeconds: number): string {
  return translator(locale)('sms.code.body', { code, minutes: Math.round(validSeconds / 60) });
}

/** Development: SMS go to the outbox (console and /dev/outbox), never anywhere else. */
export function outboxSmsSender(outbox: DevOutbox): CodeSender {
  return {
    kind: 'tsunagi-code',
    async send(to, code, locale, validSeconds) {
      outbox.add({ channel: 'sms', to, subject: `SMS to ${to}`, text: smsBody(code, locale, validSeconds), at: new Date() });
    },
  };
}

/** Sends a text message that is not a one-time code (the CIBA approval link of LINE method 2). */
export interface TextMessageSender {
  send(to: string, text: string): Promise<void>;
}

/**
 * Twilio Messages with Tsunagi's own text. Undefined when only Twilio Verify is configured: Verify
 * sends its own codes and nothing else.
 */
export function twilioTextSender(settings: TwilioSettings, log: Logger): TextMessageSender | undefined {
  if (!settings.from && !settings.messagingServiceSid) return undefined;
  const client = lazyTwilioClient(settings);
  return {
    async send(to, text) {
      const sender = settings.messagingServiceSid ? { messagingServiceSid: settings.messagingServiceSid } : { from: settings.from as string };
      await (await client()).messages.create({ to, body: text, ...sender }).catch((err: unknown) => {
        const problem = twilioProblem(err);
        log.warn({ twilioCode: (err as { code?: unknown }).code, problem }, 'twilio text message failed');
        throw new DeliveryFailed(problem, err);
      });
    },
  };
}

export function outboxTextSender(outbox: DevOutbox): TextMessageSender {
  return {
    async send(to, text) {
      outbox.add({ channel: 'sms', to, subject: `SMS to ${to}`, text, at: new Date() });
    },
  };
}
