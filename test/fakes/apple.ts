import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import type http from 'node:http';
import { decodeProtectedHeader, jwtVerify, type JWTPayload, type ProtectedHeaderParameters } from 'jose';
import { UpstreamEmulator, escapeHtml, type EmulatedUser, type IdTokenTamper, type RecordedRequest } from './upstream-emulator.js';

export { readAutoPostForm } from './upstream-emulator.js';
export type { EmulatedUser } from './upstream-emulator.js';

/** The `events` of a server-to-server notification, as Apple puts them (booleans as strings). */
export interface AppleNotificationEventClaims {
  type: 'email-disabled' | 'email-enabled' | 'consent-revoked' | 'account-delete' | (string & {});
  sub: string;
  /** Milliseconds by default (as Apple's deliveries carry it); a test may give seconds. */
  event_time?: number;
  email?: string;
  is_private_email?: 'true' | 'false' | boolean;
}

const TEN_CHARS = () => randomBytes(8).toString('hex').toUpperCase().slice(0, 10);

/**
 * A local Sign in with Apple: discovery, RS256 JWKS (/auth/keys), /auth/authorize answering with an
 * auto-submitting form_post (code, state, and the `user` JSON on a subject's first authorization
 * only), /auth/token checking the ES256 client_secret JWT against the key pair it made for the
 * team, PKCE, redirect_uri and single use, and /auth/revoke.
 *
 *   const apple = await new FakeApple().start();
 *   startTestServer(apple.env());
 *   apple.nextUser({ sub: '001234.abcd', email: 'x@privaterelay.appleid.com', email_verified: 'true', is_private_email: 'true', name: 'Taro Yamada' });
 *   // HTTP client: readAutoPostForm(html) gives the action and fields to POST. Chromium: the page submits itself.
 */
export class FakeApple extends UpstreamEmulator {
  readonly clientId = `com.example.tsunagi.${randomBytes(3).toString('hex')}`;
  readonly teamId = TEN_CHARS();
  readonly keyId = TEN_CHARS();
  /** The .p8 key Apple would have handed out; Tsunagi signs client secrets with it. */
  readonly privateKeyPem: string;
  private readonly clientSecretKey: KeyObject;
  /** Whether discovery lists PKCE (real Apple does not document it; Tsunagi then sends none). */
  advertisePkce = true;
  /** false: the form does not submit itself and a test (or person) clicks "Continue". */
  autoSubmit = true;
  /** The next authorizations set nonce_supported to false and drop the nonce (older Apple platforms). */
  nonceUnsupportedNext = 0;
  /** Every client_secret JWT presented at /auth/token or /auth/revoke, decoded after verification. */
  readonly clientSecretsSeen: Array<{ header: ProtectedHeaderParameters; claims: JWTPayload }> = [];
  readonly issuedRefreshTokens = new Set<string>();
  readonly revokedTokens: string[] = [];
  readonly failNextRevoke: number[] = [];
  /** Subjects that have authorized this client before: Apple sends `user` only the first time. */
  private readonly authorizedSubjects = new Set<string>();
  protected readonly paths = { authorize: '/auth/authorize', token: '/auth/token', jwks: '/auth/keys' };
  protected readonly idTokenAlg = 'RS256' as const;

  constructor() {
    super();
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.privateKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    this.clientSecretKey = publicKey;
  }

  /** The variables that point Tsunagi at this emulator (the PEM with literal \n, as in an env file). */
  env(): Record<string, string> {
    return {
      APPLE_CLIENT_ID: this.clientId, APPLE_TEAM_ID: this.teamId, APPLE_KEY_ID: this.keyId,
      APPLE_PRIVATE_KEY: this.privateKeyPem.replace(/\n/g, '\\n'), APPLE_ISSUER: this.issuer,
    };
  }

  /**
   * A server-to-server notification as Apple signs it: a JWT from the JWKS key with iss, aud (this
   * client), iat, jti and `events` as a JSON string. `tamper` spoils it (aud, badSignature, shiftSeconds...).
   */
  async signNotification(events: AppleNotificationEventClaims, tamper: IdTokenTamper = {}): Promise<string> {
    const body = { event_time: Date.now(), ...events };
    return this.signIdToken({ iss: this.issuer, aud: this.clientId, jti: randomBytes(12).toString('hex'), events: JSON.stringify(body) }, tamper);
  }

  /** Forget that a subject authorized before, so the next sign-in posts `user` again. */
  forgetAuthorization(sub: string): void {
    this.authorizedSubjects.delete(sub);
  }

  protected discoveryExtras(): Record<string, unknown> {
    return {
      revocation_endpoint: `${this.url}/auth/revoke`,
      response_modes_supported: ['query', 'fragment', 'form_post'],
      subject_types_supported: ['pairwise'],
      scopes_supported: ['openid', 'email', 'name'],
      token_endpoint_auth_methods_supported: ['client_secret_post'],
      claims_supported: ['aud', 'email', 'email_verified', 'exp', 'iat', 'is_private_email', 'iss', 'nonce', 'nonce_supported', 'real_user_status', 'sub', 'transfer_sub'],
      ...(this.advertisePkce ? { code_challenge_methods_supported: ['S256'] } : {}),
    };
  }

  protected async authorize(q: Record<string, string>, res: http.ServerResponse): Promise<void> {
    if (q.client_id !== this.clientId) return this.sendHtml(res, 400, '<h1>invalid_client</h1>');
    if (!q.redirect_uri || !/^https?:\/\//.test(q.redirect_uri)) return this.sendHtml(res, 400, '<h1>invalid_request: redirect_uri</h1>');
    const scopes = (q.scope ?? '').split(' ').filter(Boolean);
    // Apple: asking for name or email requires form_post.
    if (scopes.some((s) => s === 'name' || s === 'email') && q.response_mode !== 'form_post') {
      return this.sendHtml(res, 400, '<h1>invalid_request: response_mode must be form_post when name or email scope is requested</h1>');
    }
    if (q.response_type !== 'code') return this.sendHtml(res, 400, '<h1>unsupported_response_type</h1>');
    const forcedError = this.failNextAuthorize.shift();
    if (forcedError) return this.postBack(res, q.redirect_uri, { error: forcedError, state: q.state });
    const user = this.pickUser(q.login_hint);
    if (!user) return this.sendHtml(res, 400, '<h1>No test user queued</h1>');
    const nonceUnsupported = this.nonceUnsupportedNext > 0;
    if (nonceUnsupported) this.nonceUnsupportedNext -= 1;
    const code = this.issueCode({
      clientId: q.client_id, redirectUri: q.redirect_uri, codeChallenge: q.code_challenge, codeChallengeMethod: q.code_challenge_method,
      nonce: nonceUnsupported ? undefined : q.nonce, user,
    });
    const fields: Record<string, string | undefined> = { state: q.state, code };
    if (!this.authorizedSubjects.has(user.sub)) {
      this.authorizedSubjects.add(user.sub);
      const [firstName, ...rest] = (user.name ?? '').split(' ');
      const wantsName = scopes.includes('name') && user.name;
      const userJson: Record<string, unknown> = {};
      if (wantsName) userJson.name = { firstName: user.given_name ?? firstName, lastName: user.family_name ?? rest.join(' ') };
      if (scopes.includes('email') && user.email) userJson.email = user.email;
      if (Object.keys(userJson).length) fields.user = JSON.stringify(userJson);
    }
    return this.postBack(res, q.redirect_uri, fields);
  }

  private postBack(res: http.ServerResponse, action: string, fields: Record<string, string | undefined>): void {
    const nonce = randomBytes(16).toString('base64');
    const inputs = Object.entries(fields).filter(([, v]) => v !== undefined)
      .map(([k, v]) => `<input type="hidden" name="${escapeHtml(k)}" value="${escapeHtml(v as string)}">`).join('\n');
    const script = this.autoSubmit ? `<script nonce="${nonce}">document.forms[0].submit()</script>` : '';
    this.sendHtml(res, 200, `<!doctype html><html><head><title>Sign in with Apple (emulator)</title></head><body>
<form method="post" action="${escapeHtml(action)}">
${inputs}
<button type="submit" id="continue">Continue</button>
</form>${script}</body></html>`, // No form-action: Chromium applies it to the redirects after the POST too, which would stop Tsunagi's own redirects.
    { 'content-security-policy': `default-src 'none'; script-src 'nonce-${nonce}'` });
  }

  protected async authenticateClient(form: Record<string, string>): Promise<{ clientId: string } | { error: string }> {
    if (form.client_id !== this.clientId) return { error: 'unknown client_id' };
    const secret = form.client_secret;
    if (!secret) return { error: 'no client_secret' };
    try {
      const header = decodeProtectedHeader(secret);
      if (header.kid !== this.keyId) return { error: 'client_secret kid is not the key id' };
      const { payload } = await jwtVerify(secret, this.clientSecretKey, {
        algorithms: ['ES256'], issuer: this.teamId, subject: this.clientId, audience: this.issuer, requiredClaims: ['iat', 'exp'],
      });
      if ((payload.exp as number) - (payload.iat as number) > 15_777_000) return { error: 'client_secret valid for more than 6 months' };
      this.clientSecretsSeen.push({ header, claims: payload });
      return { clientId: this.clientId };
    } catch (err) {
      return { error: `client_secret rejected: ${err instanceof Error ? err.message : String(err)}` };
    }
  }

  protected idTokenClaims(user: EmulatedUser, code: { nonce: string | undefined }): Record<string, unknown> {
    const claims: Record<string, unknown> = {
      iss: this.issuer, aud: this.clientId, sub: user.sub,
      nonce: code.nonce, nonce_supported: code.nonce !== undefined,
      email: user.email,
      email_verified: user.email === undefined ? undefined : (user.email_verified ?? 'true'),
      is_private_email: user.email === undefined ? undefined : user.is_private_email,
      auth_time: Math.floor(Date.now() / 1000),
      real_user_status: 2,
    };
    return Object.fromEntries(Object.entries(claims).filter(([, v]) => v !== undefined));
  }

  protected tokenExtras(): Record<string, unknown> {
    const refreshToken = `r${randomBytes(24).toString('hex')}.0.apple`;
    this.issuedRefreshTokens.add(refreshToken);
    return { refresh_token: refreshToken };
  }

  protected async handleOther(path: string, req: RecordedRequest, res: http.ServerResponse): Promise<boolean> {
    if (path !== '/auth/revoke' || req.method !== 'POST') return false;
    const failure = this.failNextRevoke.shift();
    if (failure) { this.sendJson(res, failure, { error: failure >= 500 ? 'server_error' : 'invalid_request' }); return true; }
    const client = await this.authenticateClient(req.form);
    if ('error' in client) { this.sendJson(res, 400, { error: 'invalid_client', error_description: client.error }); return true; }
    if (!req.form.token) { this.sendJson(res, 400, { error: 'invalid_request' }); return true; }
    this.revokedTokens.push(req.form.token);
    this.issuedRefreshTokens.delete(req.form.token);
    res.writeHead(200).end();
    return true;
  }
}
