import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import { UpstreamEmulator, escapeHtml, type EmulatedUser, type IdTokenTamper, type RecordedRequest } from './upstream-emulator.js';

export type { EmulatedUser } from './upstream-emulator.js';

/**
 * A local Google: discovery, RS256 JWKS, /o/oauth2/v2/auth (redirects back with code and state, or
 * with error=…), /token (client_secret_basic or _post, PKCE, redirect_uri, single-use codes).
 *
 *   const google = await new FakeGoogle().start();
 *   startTestServer(google.env());
 *   google.nextUser({ sub: '1001', email: 'a@gmail.com', email_verified: true });
 *   google.failNextAuthorize.push('access_denied'); google.failNextToken.push({ status: 503 }, 'hang');
 *   google.tamperNextIdToken.push({ aud: 'someone-else' });
 *
 * And Cross-Account Protection (RISC): /.well-known/risc-configuration (issuer with a trailing slash,
 * as Google's), the same JWKS, and Security Event Tokens signed as Google signs them:
 *   await google.signSecurityEvent({ type: 'account-disabled', sub: '1001', reason: 'hijacking' });
 */
export class FakeGoogle extends UpstreamEmulator {
  readonly clientId = `${randomBytes(6).toString('hex')}.apps.googleusercontent.com`;
  readonly clientSecret = `GOCSPX-${randomBytes(16).toString('base64url')}`;
  protected readonly paths = { authorize: '/o/oauth2/v2/auth', token: '/token', jwks: '/oauth2/v3/certs' };
  protected readonly idTokenAlg = 'RS256' as const;

  /** The variables that point Tsunagi at this emulator. */
  env(): Record<string, string> {
    return { GOOGLE_CLIENT_ID: this.clientId, GOOGLE_CLIENT_SECRET: this.clientSecret, GOOGLE_ISSUER: this.issuer, GOOGLE_RISC_ISSUER: this.issuer };
  }

  /** Google's RISC issuer is its sign-in issuer with a trailing slash ("https://accounts.google.com/"). */
  get riscIssuer(): string { return `${this.url}/`; }

  /**
   * A Security Event Token as Google pushes it: RS256 with a key of the JWKS, iss the RISC issuer,
   * aud the client, iat, a fresh jti, no exp, one event whose subject is iss-sub (except verification).
   */
  async signSecurityEvent(event: SecurityEventClaims, tamper: IdTokenTamper = {}): Promise<string> {
    const uri = event.type === 'tokens-revoked' || event.type === 'token-revoked'
      ? `https://schemas.openid.net/secevent/oauth/event-type/${event.type}` : `https://schemas.openid.net/secevent/risc/event-type/${event.type}`;
    const body: Record<string, unknown> = event.type === 'verification' && event.sub === undefined
      ? {} : { subject: { subject_type: 'iss-sub', iss: this.riscIssuer, sub: event.sub } };
    if (event.reason) body.reason = event.reason;
    if (event.state) body.state = event.state;
    const claims = { iss: this.riscIssuer, aud: this.clientId, jti: event.jti ?? randomBytes(16).toString('hex'), events: { [uri]: body } };
    return this.signIdToken(claims, { ...tamper, claims: { exp: undefined, ...tamper.claims } });
  }

  protected discoveryExtras(): Record<string, unknown> {
    return {
      code_challenge_methods_supported: ['plain', 'S256'],
      token_endpoint_auth_methods_supported: ['client_secret_post', 'client_secret_basic'],
      scopes_supported: ['openid', 'email', 'profile'],
      claims_supported: ['aud', 'email', 'email_verified', 'exp', 'family_name', 'given_name', 'iat', 'iss', 'name', 'sub', 'hd', 'nonce', 'azp'],
    };
  }

  protected async authorize(q: Record<string, string>, res: http.ServerResponse): Promise<void> {
    // Google shows its own error page (no redirect) when the client or redirect URI is wrong.
    if (q.client_id !== this.clientId) return this.sendHtml(res, 400, '<h1>Error 401: invalid_client</h1>');
    if (!q.redirect_uri || !/^https?:\/\//.test(q.redirect_uri)) return this.sendHtml(res, 400, '<h1>Error 400: redirect_uri_mismatch</h1>');
    const back = new URL(q.redirect_uri);
    const redirect = (params: Record<string, string | undefined>) => {
      for (const [k, v] of Object.entries(params)) if (v !== undefined) back.searchParams.set(k, v);
      res.writeHead(302, { location: back.href }).end();
    };
    if (q.response_type !== 'code' || !q.scope?.split(' ').includes('openid')) return redirect({ error: 'invalid_request', state: q.state });
    const forcedError = this.failNextAuthorize.shift();
    if (forcedError) return redirect({ error: forcedError, state: q.state });
    const user = this.pickUser(q.login_hint);
    if (!user) return this.sendHtml(res, 400, `<h1>No test user queued</h1><p>login_hint: ${escapeHtml(q.login_hint ?? '(none)')}</p>`);
    const code = this.issueCode({
      clientId: q.client_id, redirectUri: q.redirect_uri, codeChallenge: q.code_challenge, codeChallengeMethod: q.code_challenge_method ?? (q.code_challenge ? 'plain' : undefined),
      nonce: q.nonce, user,
    });
    return redirect({ code, state: q.state, scope: q.scope, authuser: '0', prompt: 'none' });
  }

  protected async authenticateClient(form: Record<string, string>, authorization: string | undefined): Promise<{ clientId: string } | { error: string }> {
    let id = form.client_id;
    let secret = form.client_secret;
    if (authorization?.startsWith('Basic ')) {
      const decoded = Buffer.from(authorization.slice(6), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      const dec = (s: string) => decodeURIComponent(s.replace(/\+/g, ' '));
      id = dec(decoded.slice(0, colon));
      secret = dec(decoded.slice(colon + 1));
    }
    if (id !== this.clientId || secret !== this.clientSecret) return { error: 'The OAuth client was not found or the secret is wrong.' };
    return { clientId: id };
  }

  protected idTokenClaims(user: EmulatedUser, code: { nonce: string | undefined }): Record<string, unknown> {
    const claims: Record<string, unknown> = {
      iss: this.issuer, azp: this.clientId, aud: this.clientId, sub: user.sub,
      email: user.email, email_verified: user.email === undefined ? undefined : (user.email_verified ?? true),
      hd: user.hd, name: user.name, given_name: user.given_name, family_name: user.family_name, nonce: code.nonce,
    };
    return Object.fromEntries(Object.entries(claims).filter(([, v]) => v !== undefined));
  }

  protected tokenExtras(): Record<string, unknown> {
    return { scope: 'openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile' };
  }

  protected async handleOther(path: string, _req: RecordedRequest, res: http.ServerResponse): Promise<boolean> {
    if (path !== '/.well-known/risc-configuration') return false;
    // The shape of https://accounts.google.com/.well-known/risc-configuration.
    this.sendJson(res, 200, {
      issuer: this.riscIssuer,
      jwks_uri: `${this.url}${this.paths.jwks}`,
      delivery_methods_supported: ['https://schemas.openid.net/secevent/risc/delivery-method/push'],
      configuration_endpoint: `${this.url}/v1beta/stream:update`,
      status_endpoint: `${this.url}/v1beta/stream/status`,
      verification_endpoint: `${this.url}/v1beta/stream:verify`,
    });
    return true;
  }
}

/** One event of a SET: the short type name (an unknown one is sent as given), its Google subject and fields. */
export interface SecurityEventClaims {
  type: string;
  sub?: string;
  reason?: string;
  state?: string;
  /** Reuse a jti (a replay signed again). */
  jti?: string;
}
