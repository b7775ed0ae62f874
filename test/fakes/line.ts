import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeLineAccessToken {
  token: string;
  userId: string;
  channelId: string;
  scope: string;
  expiresAt: number;
  revoked: boolean;
}

export interface FakeLineProfile { userId: string; displayName: string; pictureUrl?: string }

export interface FakeLinePush { to: string; messages: unknown[]; channelAccessToken: string; retryKey: string | undefined; at: Date }

/**
 * A local LINE Platform on 127.0.0.1 with the shapes LINE documents for the LINE Login v2.1 verify
 * endpoint, the profile endpoint and the Messaging API push endpoint. Tests issue, revoke and expire
 * tokens and read the pushed messages.
 */
export class FakeLinePlatform {
  /** Channel access tokens of Messaging API channels (the bot); push accepts only these. */
  readonly messagingAccessToken = randomBytes(24).toString('base64url');
  readonly pushes: FakeLinePush[] = [];
  readonly requests: Array<{ method: string; path: string }> = [];
  private readonly tokens = new Map<string, FakeLineAccessToken>();
  private readonly profiles = new Map<string, FakeLineProfile>();
  private server = http.createServer((req, res) => { void this.handle(req, res); });
  url = '';

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', () => resolve()));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.url;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** A LINE user ID looks like U followed by 32 hex digits. */
  static newUserId(): string {
    return `U${randomBytes(16).toString('hex')}`;
  }

  /** Issues a LIFF/LINE Login access token for the user on the channel (and registers the user's profile). */
  issueAccessToken(opts: { userId: string; channelId: string; expiresIn?: number; displayName?: string; scope?: string }): string {
    const token = `eyJ${randomBytes(30).toString('base64url')}`;
    this.tokens.set(token, {
      token, userId: opts.userId, channelId: opts.channelId, scope: opts.scope ?? 'profile openid',
      expiresAt: Date.now() + (opts.expiresIn ?? 2_592_000) * 1000, revoked: false,
    });
    if (!this.profiles.has(opts.userId)) this.profiles.set(opts.userId, { userId: opts.userId, displayName: opts.displayName ?? 'LINE User' });
    return token;
  }

  /** What LINE does when the LIFF app closes or the user logs out: the token stops working. */
  revoke(token: string): void {
    const t = this.tokens.get(token);
    if (t) t.revoked = true;
  }

  expire(token: string): void {
    const t = this.tokens.get(token);
    if (t) t.expiresAt = Date.now() - 1000;
  }

  pushesTo(userId: string): FakeLinePush[] {
    return this.pushes.filter((p) => p.to === userId);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse) {
    let raw = '';
    for await (const chunk of req) raw += String(chunk);
    const url = new URL(req.url ?? '/', 'http://line.invalid');
    this.requests.push({ method: req.method ?? '', path: url.pathname });
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];

    if (req.method === 'GET' && url.pathname === '/oauth2/v2.1/verify') {
      const accessToken = url.searchParams.get('access_token');
      if (!accessToken) return json(400, { error: 'invalid_request', error_description: 'access_token is required' });
      const t = this.tokens.get(accessToken);
      if (!t || t.revoked) return json(400, { error: 'invalid_request', error_description: 'invalid access token' });
      const expiresIn = Math.floor((t.expiresAt - Date.now()) / 1000);
      if (expiresIn <= 0) return json(400, { error: 'invalid_request', error_description: 'access token expired' });
      return json(200, { scope: t.scope, client_id: t.channelId, expires_in: expiresIn });
    }

    if (req.method === 'GET' && url.pathname === '/v2/profile') {
      const t = bearer ? this.tokens.get(bearer) : undefined;
      if (!t || t.revoked || t.expiresAt <= Date.now()) {
        return json(401, { message: 'Authentication failed. Confirm that the access token in the authorization header is valid.' });
      }
      return json(200, this.profiles.get(t.userId));
    }

    if (req.method === 'POST' && url.pathname === '/v2/bot/message/push') {
      if (bearer !== this.messagingAccessToken) {
        return json(401, { message: 'Authentication failed. Confirm that the access token in the authorization header is valid.' });
      }
      if (req.headers['content-type']?.split(';')[0] !== 'application/json') return json(415, { message: 'Unsupported Media Type' });
      let body: { to?: unknown; messages?: unknown };
      try { body = JSON.parse(raw) as typeof body; } catch { return json(400, { message: 'The request body has 1 error(s)', details: [{ message: 'invalid JSON' }] }); }
      if (typeof body.to !== 'string' || !this.profiles.has(body.to)) {
        return json(400, { message: "The property, 'to', in the request body is invalid (line: -, column: -)" });
      }
      if (!Array.isArray(body.messages) || body.messages.length < 1 || body.messages.length > 5) {
        return json(400, { message: 'The request body has 1 error(s)', details: [{ message: 'Size must be between 1 and 5', property: 'messages' }] });
      }
      const retryKey = typeof req.headers['x-line-retry-key'] === 'string' ? req.headers['x-line-retry-key'] : undefined;
      this.pushes.push({ to: body.to, messages: body.messages, channelAccessToken: bearer, retryKey, at: new Date() });
      return json(200, { sentMessages: body.messages.map(() => ({ id: String(Date.now()), quoteToken: randomBytes(12).toString('base64url') })) });
    }

    return json(404, { message: 'Not found' });
  }
}
