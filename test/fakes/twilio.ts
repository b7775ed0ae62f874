import { randomBytes, randomInt } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeSms { to: string; from?: string; messagingServiceSid?: string; body: string; at: Date }

/** Twilio's magic test numbers, as documented for test credentials. */
export const TWILIO_INVALID_NUMBER = '+15005550001';
export const TWILIO_UNREACHABLE_NUMBER = '+15005550009';

/**
 * A local Twilio: the Messages API and Verify v2, behind HTTP basic auth, answering with Twilio's
 * JSON shapes and error codes. It checks what the SDK sends (form encoding, auth, required fields).
 */
export class FakeTwilio {
  readonly accountSid = `AC${randomBytes(16).toString('hex')}`;
  readonly authToken = randomBytes(16).toString('hex');
  readonly verifyServiceSid = `VA${randomBytes(16).toString('hex')}`;
  readonly messages: FakeSms[] = [];
  readonly requests: Array<{ method: string; path: string; form: Record<string, string> }> = [];
  private readonly verifyCodes = new Map<string, string>();
  /** The next requests answer with this status (429, 500, 503) instead of working; 'hang' never answers. */
  failNext: Array<number | 'hang'> = [];
  private server = http.createServer((req, res) => { void this.handle(req, res); });
  private hanging: http.ServerResponse[] = [];
  url = '';

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', () => resolve()));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.url;
  }

  close(): Promise<void> {
    for (const r of this.hanging) r.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  lastMessageTo(to: string): FakeSms | undefined {
    return [...this.messages].reverse().find((m) => m.to === to);
  }

  /** The first message to `to` newer than `previous` (waits for it: Tsunagi may send after it answers). */
  nextMessageTo(to: string, previous?: FakeSms, timeoutMs = 10_000): Promise<FakeSms> {
    const find = () => this.messages.slice(previous ? this.messages.indexOf(previous) + 1 : 0).find((m) => m.to === to);
    const found = find();
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.arrivals.delete(check); reject(new Error(`no SMS to ${to} within ${timeoutMs}ms`)); }, timeoutMs);
      const check = () => {
        const m = find();
        if (!m) return;
        clearTimeout(timer);
        this.arrivals.delete(check);
        resolve(m);
      };
      this.arrivals.add(check);
    });
  }

  /** Resolves once `count` requests have reached the fake (hanging ones included). */
  requestsReceived(count: number, timeoutMs = 10_000): Promise<void> {
    if (this.requests.length >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.arrivals.delete(check); reject(new Error(`fewer than ${count} Twilio requests within ${timeoutMs}ms`)); }, timeoutMs);
      const check = () => {
        if (this.requests.length < count) return;
        clearTimeout(timer);
        this.arrivals.delete(check);
        resolve();
      };
      this.arrivals.add(check);
    });
  }

  private readonly arrivals = new Set<() => void>();
  /** Answers to the Messages API wait this long first (a slow carrier), so a caller that waits for Twilio is slow by as much. */
  answerDelayMs = 0;

  verifyCodeFor(to: string): string | undefined {
    return this.verifyCodes.get(to);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse) {
    let raw = '';
    for await (const chunk of req) raw += String(chunk);
    const form = Object.fromEntries(new URLSearchParams(raw));
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    this.requests.push({ method: req.method ?? '', path, form });
    for (const arrived of [...this.arrivals]) arrived();
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    const error = (status: number, code: number, message: string) => json(status, { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status });

    const auth = req.headers.authorization ?? '';
    const expected = `Basic ${Buffer.from(`${this.accountSid}:${this.authToken}`).toString('base64')}`;
    if (auth !== expected) return error(401, 20003, 'Authenticate');
    if (req.method !== 'POST' || req.headers['content-type']?.split(';')[0] !== 'application/x-www-form-urlencoded') {
      return error(405, 20004, 'Method not allowed');
    }
    const failure = this.failNext.shift();
    if (failure === 'hang') { this.hanging.push(res); return undefined; }
    if (failure === 429) return error(429, 20429, 'Too Many Requests');
    if (typeof failure === 'number') return error(failure, 20500, 'Internal Server Error');

    if (path === `/2010-04-01/Accounts/${this.accountSid}/Messages.json`) {
      const { To: to, From: from, MessagingServiceSid: messagingServiceSid, Body: body } = form;
      if (!to || !body) return error(400, 21604, "A 'To' phone number and a 'Body' are required.");
      if (!from && !messagingServiceSid) return error(400, 21603, "A 'From' phone number or 'MessagingServiceSid' is required.");
      if (!/^\+[1-9]\d{6,14}$/.test(to) || to === TWILIO_INVALID_NUMBER) return error(400, 21211, `The 'To' number ${to} is not a valid phone number.`);
      if (to === TWILIO_UNREACHABLE_NUMBER) return error(400, 21612, `The 'To' phone number: ${to}, is not currently reachable using the 'From' phone number: ${from} via SMS.`);
      if (this.answerDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.answerDelayMs));
      this.messages.push({ to, from, messagingServiceSid, body, at: new Date() });
      for (const arrived of [...this.arrivals]) arrived();
      return json(201, {
        sid: `SM${randomBytes(16).toString('hex')}`, account_sid: this.accountSid, to, from: from ?? null, messaging_service_sid: messagingServiceSid ?? null,
        body, status: 'queued', num_segments: '1', direction: 'outbound-api', api_version: '2010-04-01', date_created: new Date().toUTCString(),
        error_code: null, error_message: null, price: null, uri: `/2010-04-01/Accounts/${this.accountSid}/Messages.json`,
      });
    }
    if (path === `/v2/Services/${this.verifyServiceSid}/Verifications`) {
      const { To: to, Channel: channel } = form;
      if (!to || channel !== 'sms') return error(400, 60200, 'Invalid parameter');
      if (to === TWILIO_INVALID_NUMBER) return error(400, 60200, 'Invalid parameter `To`');
      const code = String(randomInt(0, 1_000_000)).padStart(6, '0');
      this.verifyCodes.set(to, code);
      this.messages.push({ to, body: `Your verification code is: ${code}`, at: new Date() });
      for (const arrived of [...this.arrivals]) arrived();
      return json(201, { sid: `VE${randomBytes(16).toString('hex')}`, service_sid: this.verifyServiceSid, account_sid: this.accountSid, to, channel, status: 'pending', valid: false, lookup: {}, send_code_attempts: [] });
    }
    if (path === `/v2/Services/${this.verifyServiceSid}/VerificationCheck`) {
      const { To: to, Code: code } = form;
      if (!to || !code) return error(400, 60200, 'Invalid parameter');
      const expectedCode = this.verifyCodes.get(to);
      if (!expectedCode) return error(404, 20404, 'The requested resource was not found');
      const approved = expectedCode === code;
      if (approved) this.verifyCodes.delete(to);
      return json(200, { sid: `VE${randomBytes(16).toString('hex')}`, service_sid: this.verifyServiceSid, account_sid: this.accountSid, to, channel: 'sms', status: approved ? 'approved' : 'pending', valid: approved });
    }
    return error(404, 20404, 'The requested resource was not found');
  }
}

export function smsCode(body: string): string {
  const m = /\b(\d{6})\b/.exec(body);
  if (!m?.[1]) throw new Error(`no code in SMS: ${body}`);
  return m[1];
}
