import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';

// The shared half of the local Google and Apple emulators: a real HTTP server on loopback with
// discovery, a JWKS of real keys, an authorization endpoint a test (HTTP client or Chromium) can
// drive, a token endpoint that checks what a real one checks, and knobs to make each step fail.

/** Who "signs in" at the provider. Booleans may be given as strings: Apple sends them so. */
export interface EmulatedUser {
  sub: string;
  email?: string;
  email_verified?: boolean | 'true' | 'false';
  /** Google Workspace domain. */
  hd?: string;
  /** Apple Hide My Email. */
  is_private_email?: boolean | 'true' | 'false';
  name?: string;
  given_name?: string;
  family_name?: string;
}

/** Ways to spoil the next ID token the token endpoint issues. */
export interface IdTokenTamper {
  aud?: string;
  azp?: string;
  iss?: string;
  nonce?: string | null;
  /** Seconds to shift iat and exp by (negative: issued in the past; -7200 gives an expired token). */
  shiftSeconds?: number;
  /** Sign with a key that is not in the JWKS but claims a published kid. */
  badSignature?: boolean;
  /** An unsecured JWT: header alg "none", no signature. */
  algNone?: boolean;
  /** HS256 with the client secret as key, a classic confusion attack. */
  hmacWithSecret?: string;
  /** Sign with a brand-new key under a kid the JWKS does not have (yet: see publishUnknownKidAfterUse). */
  unknownKid?: boolean;
  /** Extra or replaced claims. */
  claims?: Record<string, unknown>;
}

export type TokenFailure = { status: number; error?: string } | { delayMs: number } | 'hang';

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  form: Record<string, string>;
  authorization: string | undefined;
}

interface IssuedCode {
  clientId: string;
  redirectUri: string;
  codeChallenge: string | undefined;
  codeChallengeMethod: string | undefined;
  nonce: string | undefined;
  user: EmulatedUser;
  used: boolean;
}

interface SigningKey { kid: string; alg: 'RS256' | 'ES256'; privateKey: CryptoKey; publicJwk: JWK }

async function makeKey(alg: 'RS256' | 'ES256'): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = randomBytes(8).toString('hex');
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

export abstract class UpstreamEmulator {
  url = '';
  readonly requests: RecordedRequest[] = [];
  /** Users who sign in next, in order; when empty, login_hint picks among `knownUsers`. */
  private readonly queuedUsers: EmulatedUser[] = [];
  readonly knownUsers: EmulatedUser[] = [];
  /** The next authorization requests end with this error (e.g. 'access_denied') instead of signing in. */
  readonly failNextAuthorize: string[] = [];
  readonly failNextToken: TokenFailure[] = [];
  readonly tamperNextIdToken: IdTokenTamper[] = [];
  protected readonly codes = new Map<string, IssuedCode>();
  protected keys: SigningKey[] = [];
  private readonly hanging = new Set<http.ServerResponse>();
  private readonly server = http.createServer((req, res) => { void this.dispatch(req, res); });

  protected abstract readonly paths: { authorize: string; token: string; jwks: string };
  protected abstract readonly idTokenAlg: 'RS256' | 'ES256';
  protected abstract discoveryExtras(): Record<string, unknown>;
  protected abstract authorize(query: Record<string, string>, res: http.ServerResponse): Promise<void>;
  /** Checks client authentication at the token endpoint; returns the client id or an error message. */
  protected abstract authenticateClient(form: Record<string, string>, authorization: string | undefined): Promise<{ clientId: string } | { error: string }>;
  protected abstract idTokenClaims(user: EmulatedUser, code: IssuedCode): Record<string, unknown>;
  protected abstract tokenExtras(user: EmulatedUser): Record<string, unknown>;
  protected abstract handleOther(path: string, req: RecordedRequest, res: http.ServerResponse): Promise<boolean>;

  get issuer(): string { return this.url; }

  async start(): Promise<this> {
    this.keys = [await makeKey(this.idTokenAlg)];
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', () => resolve()));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    for (const r of this.hanging) r.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The next sign-in at the authorization endpoint is this user. */
  nextUser(user: EmulatedUser): this {
    this.queuedUsers.push(user);
    return this;
  }

  /** A user login_hint (their sub or email) can select when no user is queued. */
  addUser(user: EmulatedUser): this {
    this.knownUsers.push(user);
    return this;
  }

  /** Publishes a new signing key and signs with it from now on; `dropOld` removes the old ones from the JWKS. */
  async rotateKeys(dropOld = false): Promise<string> {
    const key = await makeKey(this.idTokenAlg);
    this.keys = dropOld ? [key] : [key, ...this.keys];
    return key.kid;
  }

  get currentKid(): string { return (this.keys[0] as SigningKey).kid; }

  requestsTo(path: string): RecordedRequest[] {
    return this.requests.filter((r) => r.path === path);
  }

  get authorizeRequests(): RecordedRequest[] { return this.requestsTo(this.paths.authorize); }
  get tokenRequests(): RecordedRequest[] { return this.requestsTo(this.paths.token); }
  get jwksRequests(): RecordedRequest[] { return this.requestsTo(this.paths.jwks); }

  /** Signs an ID token as the token endpoint would, for tests that check tokens directly. */
  async signIdToken(claims: JWTPayload, tamper: IdTokenTamper = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000) + (tamper.shiftSeconds ?? 0);
    const payload: Record<string, unknown> = { iat: now, exp: now + 3600, ...claims };
    if (tamper.aud !== undefined) payload.aud = tamper.aud;
    if (tamper.azp !== undefined) payload.azp = tamper.azp;
    if (tamper.iss !== undefined) payload.iss = tamper.iss;
    if (tamper.nonce === null) delete payload.nonce;
    else if (tamper.nonce !== undefined) payload.nonce = tamper.nonce;
    Object.assign(payload, tamper.claims ?? {});
    if (tamper.algNone) {
      const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
      return `${enc({ alg: 'none', typ: 'JWT' })}.${enc(payload)}.`;
    }
    if (tamper.hmacWithSecret !== undefined) {
      return new SignJWT(payload).setProtectedHeader({ alg: 'HS256', kid: this.currentKid }).sign(new TextEncoder().encode(tamper.hmacWithSecret));
    }
    let key = this.keys[0] as SigningKey;
    if (tamper.badSignature) key = { ...(await makeKey(this.idTokenAlg)), kid: key.kid };
    if (tamper.unknownKid) key = await makeKey(this.idTokenAlg);
    return new SignJWT(payload).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' }).sign(key.privateKey);
  }

  /** Signs with a fresh key that appears in the JWKS only from now on (a rotation the client has not seen). */
  async signWithNewlyPublishedKey(claims: JWTPayload): Promise<string> {
    await this.rotateKeys();
    return this.signIdToken(claims);
  }

  protected pickUser(loginHint: string | undefined): EmulatedUser | undefined {
    const queued = this.queuedUsers.shift();
    if (queued) return queued;
    if (!loginHint) return undefined;
    return this.knownUsers.find((u) => u.sub === loginHint || u.email?.toLowerCase() === loginHint.toLowerCase());
  }

  protected issueCode(c: Omit<IssuedCode, 'used'>): string {
    const code = randomBytes(24).toString('base64url');
    this.codes.set(code, { ...c, used: false });
    return code;
  }

  protected sendJson(res: http.ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
  }

  protected sendHtml(res: http.ServerResponse, status: number, html: string, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...headers }).end(html);
  }

  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      await this.handle(req, res);
    } catch (err) {
      if (!res.headersSent) this.sendJson(res, 500, { error: 'server_error', error_description: String(err) });
    }
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let raw = '';
    for await (const chunk of req) raw += String(chunk);
    const url = new URL(req.url ?? '/', this.url);
    const isForm = req.headers['content-type']?.split(';')[0]?.trim() === 'application/x-www-form-urlencoded';
    const recorded: RecordedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      form: isForm ? Object.fromEntries(new URLSearchParams(raw)) : {},
      authorization: req.headers.authorization,
    };
    this.requests.push(recorded);

    if (url.pathname === '/.well-known/openid-configuration') {
      return this.sendJson(res, 200, {
        issuer: this.issuer,
        authorization_endpoint: `${this.url}${this.paths.authorize}`,
        token_endpoint: `${this.url}${this.paths.token}`,
        jwks_uri: `${this.url}${this.paths.jwks}`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: [this.idTokenAlg],
        ...this.discoveryExtras(),
      });
    }
    if (url.pathname === this.paths.jwks) return this.sendJson(res, 200, { keys: this.keys.map((k) => k.publicJwk) });
    if (url.pathname === this.paths.authorize && req.method === 'GET') return this.authorize(recorded.query, res);
    if (url.pathname === this.paths.token && req.method === 'POST') return this.token(recorded, res);
    if (await this.handleOther(url.pathname, recorded, res)) return undefined;
    return this.sendJson(res, 404, { error: 'not_found' });
  }

  private async token(req: RecordedRequest, res: http.ServerResponse): Promise<void> {
    const failure = this.failNextToken.shift();
    if (failure === 'hang') { this.hanging.add(res); return; }
    if (failure && 'delayMs' in failure) await new Promise((r) => setTimeout(r, failure.delayMs));
    if (failure && 'status' in failure) return this.sendJson(res, failure.status, { error: failure.error ?? 'server_error' });

    const client = await this.authenticateClient(req.form, req.authorization);
    if ('error' in client) return this.sendJson(res, 401, { error: 'invalid_client', error_description: client.error });
    const form = req.form;
    if (form.grant_type !== 'authorization_code') return this.sendJson(res, 400, { error: 'unsupported_grant_type' });
    const issued = form.code ? this.codes.get(form.code) : undefined;
    if (!issued || issued.used) return this.sendJson(res, 400, { error: 'invalid_grant', error_description: 'unknown or used code' });
    issued.used = true; // single use, even when the rest of the request is wrong
    if (issued.clientId !== client.clientId) return this.sendJson(res, 400, { error: 'invalid_grant', error_description: 'code of another client' });
    if (form.redirect_uri !== issued.redirectUri) return this.sendJson(res, 400, { error: 'invalid_grant', error_description: 'redirect_uri mismatch' });
    if (issued.codeChallenge !== undefined) {
      const verifier = form.code_verifier;
      const ok = verifier !== undefined && /^[A-Za-z0-9._~-]{43,128}$/.test(verifier)
        && createHash('sha256').update(verifier).digest('base64url') === issued.codeChallenge;
      if (!ok || issued.codeChallengeMethod !== 'S256') return this.sendJson(res, 400, { error: 'invalid_grant', error_description: 'PKCE verification failed' });
    } else if (form.code_verifier !== undefined) {
      return this.sendJson(res, 400, { error: 'invalid_grant', error_description: 'code_verifier without code_challenge' });
    }
    const tamper = this.tamperNextIdToken.shift() ?? {};
    const idToken = await this.signIdToken(this.idTokenClaims(issued.user, issued) as JWTPayload, tamper);
    return this.sendJson(res, 200, {
      access_token: randomBytes(24).toString('base64url'),
      token_type: 'Bearer',
      expires_in: 3600,
      id_token: idToken,
      ...this.tokenExtras(issued.user),
    });
  }
}

/** Reads the auto-submitting form the Apple emulator answers with: where it posts and what. */
export function readAutoPostForm(html: string): { action: string; fields: Record<string, string> } {
  const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
  if (!action) throw new Error('no form on the page');
  const fields: Record<string, string> = {};
  for (const m of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)) {
    fields[m[1] as string] = unescapeHtml(m[2] as string);
  }
  return { action: unescapeHtml(action), fields };
}

export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&#39;');
}

function unescapeHtml(s: string): string {
  return s.replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&#39;/g, "'").replace(/&amp;/g, '&');
}
