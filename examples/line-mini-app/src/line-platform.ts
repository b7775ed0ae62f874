import { ApiError } from './errors.js';

export interface LineUser { userId: string; displayName: string }

const TIMEOUT_MS = 5000;

/**
 * The LINE Platform as this backend uses it: verify a LIFF access token (LINE Login v2.1), read the
 * profile it belongs to, and push messages with the Messaging API.
 */
export class LinePlatform {
  constructor(private readonly baseUrl: string, private readonly channelId: string, private readonly messagingAccessToken: string | undefined) {}

  /**
   * Who the LINE access token belongs to. The token must have been issued for our own channel:
   * a token from any other LINE app would otherwise let that app's operator link accounts here.
   */
  async authenticate(accessToken: string): Promise<LineUser> {
    const verify = await this.call(`/oauth2/v2.1/verify?access_token=${encodeURIComponent(accessToken)}`, { method: 'GET' });
    if (verify.status === 400) {
      const description = stringField(verify.body, 'error_description') ?? 'invalid access token';
      throw new ApiError(401, 'invalid_line_token', `LINE refused the access token: ${description}. Reopen the mini-app and try again.`);
    }
    if (verify.status !== 200) throw lineUnavailable(verify.status);
    if (String(numberOrStringField(verify.body, 'client_id')) !== this.channelId) {
      throw new ApiError(401, 'invalid_line_token', 'The LINE access token was issued for another LINE channel.');
    }
    const expiresIn = numberOrStringField(verify.body, 'expires_in');
    if (typeof expiresIn !== 'number' || expiresIn <= 0) throw new ApiError(401, 'invalid_line_token', 'The LINE access token has expired.');

    const profile = await this.call('/v2/profile', { method: 'GET', headers: { authorization: `Bearer ${accessToken}` } });
    if (profile.status === 401) throw new ApiError(401, 'invalid_line_token', 'LINE refused the access token when reading the profile.');
    if (profile.status !== 200) throw lineUnavailable(profile.status);
    const userId = stringField(profile.body, 'userId');
    if (!userId || !/^U[0-9a-f]{32}$/.test(userId)) throw new ApiError(502, 'line_unavailable', 'LINE answered the profile request without a user id.');
    return { userId, displayName: stringField(profile.body, 'displayName') ?? '' };
  }

  /** Messaging API push; `retryKey` makes a retried request send the message once. */
  async push(to: string, text: string, retryKey: string): Promise<void> {
    if (!this.messagingAccessToken) throw new ApiError(503, 'notify_disabled', 'Push messages are not configured (LINE_MESSAGING_ACCESS_TOKEN).');
    const res = await this.call('/v2/bot/message/push', {
      method: 'POST',
      headers: { authorization: `Bearer ${this.messagingAccessToken}`, 'content-type': 'application/json', 'x-line-retry-key': retryKey },
      body: JSON.stringify({ to, messages: [{ type: 'text', text }] }),
    });
    if (res.status !== 200) {
      const message = stringField(res.body, 'message') ?? `status ${res.status}`;
      throw new ApiError(502, 'line_push_failed', `LINE did not accept the push message: ${message}`);
    }
  }

  private async call(path: string, init: RequestInit): Promise<{ status: number; body: unknown }> {
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}${path}`, { ...init, signal: AbortSignal.timeout(TIMEOUT_MS) });
    } catch {
      throw new ApiError(502, 'line_unavailable', 'The LINE Platform could not be reached. Try again in a moment.');
    }
    const text = await res.text();
    let body: unknown;
    try { body = JSON.parse(text); } catch { body = undefined; }
    return { status: res.status, body };
  }
}

function lineUnavailable(status: number) {
  return new ApiError(502, 'line_unavailable', `The LINE Platform answered with status ${status}. Try again in a moment.`);
}

function stringField(body: unknown, key: string): string | undefined {
  const v = typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[key] : undefined;
  return typeof v === 'string' ? v : undefined;
}

function numberOrStringField(body: unknown, key: string): number | string | undefined {
  const v = typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[key] : undefined;
  return typeof v === 'number' || typeof v === 'string' ? v : undefined;
}
