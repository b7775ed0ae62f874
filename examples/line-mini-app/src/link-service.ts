import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { LinkAppConfig } from './config.js';
import { ApiError } from './errors.js';
import type { LinePlatform } from './line-platform.js';
import { LinkRefused, type LinkRefusal, type LinkStore } from './link-store.js';
import type { TsunagiTokenVerifier, VerifiedSignIn } from './tsunagi-tokens.js';

/** What POST /link/complete accepts: Tsunagi's ID token, or a JWT access token for this backend plus the nonce. */
export type TsunagiProof = { idToken: string } | { accessToken: string; nonce: string };

const REFUSALS: Record<Exclude<LinkRefusal, 'unknown_ciba_request'>, ApiError> = {
  unknown_nonce: new ApiError(400, 'invalid_nonce', 'The link nonce is unknown, expired or already used. Start linking again.'),
  nonce_of_other_line_user: new ApiError(400, 'invalid_nonce', 'The link nonce was issued to another LINE user.'),
  token_replayed: new ApiError(400, 'token_replayed', 'This Tsunagi access token has already been used to link. Sign in again.'),
  line_user_linked_elsewhere: new ApiError(409, 'line_user_already_linked',
    'This LINE account is already linked to another account. Unlink it first, then link again.'),
  account_linked_elsewhere: new ApiError(409, 'account_already_linked',
    'This account is already linked to another LINE account. Unlink that LINE account first.'),
};

/** Method 1: the LIFF page proves the LINE user and the Tsunagi sign-in; this links the two ids. */
export class LinkService {
  constructor(
    private readonly config: LinkAppConfig,
    private readonly line: LinePlatform,
    private readonly tokens: TsunagiTokenVerifier,
    private readonly store: LinkStore,
  ) {}

  /** A single-use nonce bound to the LINE user; the LIFF page sends it to Tsunagi as the `nonce` parameter. */
  async start(lineAccessToken: string): Promise<{ nonce: string; expiresIn: number }> {
    const lineUser = await this.line.authenticate(lineAccessToken);
    const nonce = randomBytes(32).toString('base64url');
    await this.store.saveNonce(nonce, lineUser.userId, this.config.nonceTtlSeconds);
    return { nonce, expiresIn: this.config.nonceTtlSeconds };
  }

  async complete(lineAccessToken: string, proof: TsunagiProof): Promise<{ created: boolean; sub: string }> {
    // The LINE token is checked again: the one presented at start may have belonged to someone else.
    const lineUser = await this.line.authenticate(lineAccessToken);
    const signIn = 'idToken' in proof ? await this.tokens.verifyIdToken(proof.idToken) : await this.tokens.verifyAccessToken(proof.accessToken);
    const nonce = 'idToken' in proof ? signIn.nonce : proof.nonce;
    if (!nonce) throw new ApiError(400, 'invalid_nonce', 'The ID token carries no nonce: start linking with POST /link/start.');
    this.requireRecentSignIn(signIn);
    try {
      const result = await this.store.link({
        nonce, lineUserId: lineUser.userId, sub: signIn.sub,
        usedToken: 'accessToken' in proof && signIn.jti ? { jti: signIn.jti, expiresAt: new Date(signIn.exp * 1000) } : undefined,
      });
      return { created: result === 'linked', sub: signIn.sub };
    } catch (err) {
      if (err instanceof LinkRefused && err.reason !== 'unknown_ciba_request') throw REFUSALS[err.reason];
      throw err;
    }
  }

  async unlink(lineAccessToken: string): Promise<void> {
    const lineUser = await this.line.authenticate(lineAccessToken);
    if (!(await this.store.unlinkLineUser(lineUser.userId))) throw new ApiError(404, 'not_linked', 'This LINE account is not linked.');
  }

  /** Pushes a text message to the LINE user linked to the Tsunagi account `sub`. */
  async notify(secret: string | undefined, sub: string, text: string): Promise<void> {
    const expected = this.config.notifySecret;
    if (!expected) throw new ApiError(503, 'notify_disabled', 'POST /notify is not configured (NOTIFY_SECRET).');
    if (!secret || !sameSecret(secret, expected)) throw new ApiError(401, 'unauthorized', 'A valid x-notify-secret header is required.');
    const lineUserId = await this.store.lineUserOf(sub);
    if (!lineUserId) throw new ApiError(404, 'not_linked', 'No LINE account is linked to that account.');
    await this.line.push(lineUserId, text, crypto.randomUUID());
  }

  private requireRecentSignIn(signIn: VerifiedSignIn) {
    const age = Math.floor(Date.now() / 1000) - signIn.authTime;
    if (age > this.config.maxAuthAgeSeconds) {
      throw new ApiError(401, 'stale_sign_in',
        `The Tsunagi sign-in is ${age} seconds old; linking needs one from the last ${this.config.maxAuthAgeSeconds} seconds. Sign in again (max_age).`);
    }
  }
}

// Compared as hashes: equal length for timingSafeEqual, and no early exit on the first difference.
function sameSecret(given: string, expected: string): boolean {
  const h = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(h(given), h(expected));
}
