import { randomBytes, randomInt } from 'node:crypto';
import type { LinkAppConfig } from './config.js';
import { ApiError } from './errors.js';
import type { LinePlatform } from './line-platform.js';
import { LinkRefused, type LinkStore } from './link-store.js';
import type { TsunagiTokenVerifier } from './tsunagi-tokens.js';

const CIBA_GRANT = 'urn:openid:params:grant-type:ciba';
const TIMEOUT_MS = 5000;
// No vowels (no words by accident) and no look-alikes (0/O, 1/I/L).
const LETTERS = 'BCDFGHJKMNPQRSTVWXZ';

/** Four letters and four digits, e.g. "KTRM-4821": quick to compare between the mini-app and the mail or SMS. */
export function newBindingMessage(): string {
  const letters = Array.from({ length: 4 }, () => LETTERS[randomInt(LETTERS.length)]).join('');
  return `${letters}-${String(randomInt(10_000)).padStart(4, '0')}`;
}

export type CibaPoll =
  | { status: 'pending'; bindingMessage: string }
  | { status: 'linked'; created: boolean; sub: string };

const LINK_REFUSALS: Record<string, ApiError> = {
  unknown_ciba_request: new ApiError(404, 'unknown_request', 'This request is unknown or already finished. Start again.'),
  line_user_linked_elsewhere: new ApiError(409, 'line_user_already_linked', 'This LINE account is already linked to another account. Unlink it first, then link again.'),
  account_linked_elsewhere: new ApiError(409, 'account_already_linked', 'This account is already linked to another LINE account. Unlink that LINE account first.'),
};

/**
 * Method 2 (OpenID CIBA, poll mode): the person types their email address or phone number in the
 * mini-app; this backend asks Tsunagi to reach them there with a binding message the mini-app shows;
 * they sign in at Tsunagi and approve; this backend polls Tsunagi and links the ID token's `sub` to
 * the LINE user who started. Knowing an address proves nothing: only the approval does.
 */
export class CibaLinkService {
  constructor(
    private readonly config: LinkAppConfig,
    private readonly line: LinePlatform,
    private readonly tokens: TsunagiTokenVerifier,
    private readonly store: LinkStore,
  ) {}

  private client() {
    const client = this.config.tsunagiCiba;
    if (!client) throw new ApiError(503, 'ciba_disabled', 'Linking by email or phone is not configured (TSUNAGI_CIBA_CLIENT_ID).');
    return client;
  }

  async start(lineAccessToken: string, loginHint: string): Promise<{ requestId: string; bindingMessage: string; expiresIn: number; interval: number }> {
    const client = this.client();
    const lineUser = await this.line.authenticate(lineAccessToken);
    const bindingMessage = newBindingMessage();
    const answer = await this.callTsunagi('backchannel_authentication_endpoint', client, {
      scope: 'openid', login_hint: loginHint, binding_message: bindingMessage, requested_expiry: '300',
    });
    if (answer.status === 429) throw new ApiError(429, 'too_many_requests', 'Too many requests for this address right now. Wait a few minutes and try again.');
    if (answer.status !== 200 || typeof answer.body.auth_req_id !== 'string' || typeof answer.body.expires_in !== 'number') {
      if (answer.body.error === 'invalid_request') throw new ApiError(400, 'invalid_login_hint', 'Enter an email address or a phone number.');
      throw new ApiError(502, 'tsunagi_unavailable', `Tsunagi refused the request (${String(answer.body.error ?? answer.status)}).`);
    }
    const interval = typeof answer.body.interval === 'number' ? answer.body.interval : 5;
    const requestId = randomBytes(24).toString('base64url');
    await this.store.saveCibaRequest({
      requestId, authReqId: answer.body.auth_req_id, lineUserId: lineUser.userId, bindingMessage, intervalSeconds: interval, expiresInSeconds: answer.body.expires_in,
    });
    return { requestId, bindingMessage, expiresIn: answer.body.expires_in, interval };
  }

  /** The mini-app may ask as often as it likes; Tsunagi is asked at most once per interval. */
  async poll(lineAccessToken: string, requestId: string): Promise<CibaPoll> {
    const client = this.client();
    const lineUser = await this.line.authenticate(lineAccessToken);
    const claim = await this.store.claimCibaPoll(requestId, lineUser.userId);
    if (!claim) throw LINK_REFUSALS.unknown_ciba_request as ApiError;
    if (claim === 'wait') return { status: 'pending', bindingMessage: (await this.store.bindingMessageOf(requestId, lineUser.userId)) ?? '' };

    const answer = await this.callTsunagi('token_endpoint', client, { grant_type: CIBA_GRANT, auth_req_id: claim.authReqId });
    if (answer.status === 200 && typeof answer.body.id_token === 'string') {
      const signIn = await this.tokens.verifyCibaIdToken(answer.body.id_token, client.clientId);
      try {
        const result = await this.store.linkCiba({ requestId, lineUserId: lineUser.userId, sub: signIn.sub });
        return { status: 'linked', created: result === 'linked', sub: signIn.sub };
      } catch (err) {
        if (err instanceof LinkRefused && LINK_REFUSALS[err.reason]) throw LINK_REFUSALS[err.reason] as ApiError;
        throw err;
      }
    }
    switch (answer.body.error) {
      case 'authorization_pending':
        return { status: 'pending', bindingMessage: claim.bindingMessage };
      case 'slow_down':
        await this.store.slowDownCiba(requestId);
        return { status: 'pending', bindingMessage: claim.bindingMessage };
      case 'access_denied':
        await this.store.forgetCibaRequest(requestId);
        throw new ApiError(403, 'refused', 'The request was refused at Tsunagi. Nothing was linked.');
      case 'expired_token':
        await this.store.forgetCibaRequest(requestId);
        throw new ApiError(410, 'expired', 'The request expired before it was approved. Start again.');
      default:
        await this.store.forgetCibaRequest(requestId);
        throw new ApiError(502, 'tsunagi_unavailable', `Tsunagi refused the poll (${String(answer.body.error ?? answer.status)}).`);
    }
  }

  private async callTsunagi(endpoint: 'backchannel_authentication_endpoint' | 'token_endpoint', client: { clientId: string; clientSecret: string }, form: Record<string, string>) {
    const url = (await this.tokens.metadata())[endpoint];
    if (typeof url !== 'string') throw new ApiError(502, 'tsunagi_unavailable', `Tsunagi does not offer ${endpoint}.`);
    // client_secret_basic: form-urlencoded id and secret (RFC 6749 section 2.3.1).
    const basic = Buffer.from(`${encodeURIComponent(client.clientId)}:${encodeURIComponent(client.clientSecret)}`).toString('base64');
    const res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form),
      signal: AbortSignal.timeout(TIMEOUT_MS),
    }).catch(() => undefined);
    if (!res) throw new ApiError(502, 'tsunagi_unavailable', 'Tsunagi could not be reached.');
    const body = await res.json().catch(() => ({})) as Record<string, unknown>;
    return { status: res.status, body };
  }
}
