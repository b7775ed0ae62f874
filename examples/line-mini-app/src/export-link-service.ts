import { createHmac } from 'node:crypto';
import type { LinkAppConfig } from './config.js';
import { ApiError } from './errors.js';
import type { LinePlatform } from './line-platform.js';
import { LinkRefused, type ExportEntry, type LinkStore } from './link-store.js';
import type { TsunagiTokenVerifier } from './tsunagi-tokens.js';

const TIMEOUT_MS = 10_000;
// A link code has 10^8 values and lives 10 minutes: a few tries per LINE user make guessing hopeless.
export const CODE_ATTEMPTS = { limit: 5, windowSeconds: 15 * 60 };

/** The same keyed hash Tsunagi puts in the export: HMAC-SHA256(hash key, "code:<8 digits>"), base64url. */
export function keyedHash(hashKey: string, kind: 'email' | 'phone' | 'code', value: string): string {
  return createHmac('sha256', Buffer.from(hashKey, 'base64url')).update(`${kind}:${value}`).digest('base64url');
}

/**
 * Method 3: Tsunagi's incremental export is pulled into this backend's own table (client credentials,
 * scope tsunagi:export), and a LINE user is linked when they type the link code the person made on
 * Tsunagi's account page. The backend never calls Tsunagi to decide: it compares keyed hashes.
 */
export class ExportLinkService {
  constructor(
    private readonly config: LinkAppConfig,
    private readonly line: LinePlatform,
    private readonly tokens: TsunagiTokenVerifier,
    private readonly store: LinkStore,
  ) {}

  /** Pulls every change since the stored cursor and applies it (pages until Tsunagi says no more). */
  async sync(): Promise<number> {
    const client = this.config.tsunagiExport;
    if (!client) throw new ApiError(503, 'export_disabled', 'Linking by code is not configured (TSUNAGI_EXPORT_CLIENT_ID).');
    const metadata = await this.tokens.metadata();
    const basic = Buffer.from(`${encodeURIComponent(client.clientId)}:${encodeURIComponent(client.clientSecret)}`).toString('base64');
    const tokenRes = await fetch(String(metadata.token_endpoint), {
      method: 'POST', signal: AbortSignal.timeout(TIMEOUT_MS),
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'tsunagi:export' }),
    }).catch(() => undefined);
    const token = tokenRes?.ok ? (await tokenRes.json() as { access_token?: string }).access_token : undefined;
    if (!token) throw new ApiError(502, 'tsunagi_unavailable', 'Could not get an export token from Tsunagi.');
    let applied = 0;
    for (let page = 0; page < 100; page++) {
      const state = await this.store.exportState(client.clientId);
      const url = new URL(`${this.config.tsunagiIssuer}/export/changes`);
      if (state) url.searchParams.set('since', state.cursor);
      const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(TIMEOUT_MS) }).catch(() => undefined);
      if (!res?.ok) throw new ApiError(502, 'tsunagi_unavailable', `Tsunagi's export answered ${res?.status ?? 'nothing'}.`);
      const lines = (await res.text()).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      const header = lines[0];
      const end = lines.at(-1);
      if (header?.type !== 'header' || end?.type !== 'end' || typeof header.hash_key !== 'string' || typeof end.next_cursor !== 'string') {
        throw new ApiError(502, 'tsunagi_unavailable', "Tsunagi's export is not in the expected format.");
      }
      const records = lines.slice(1, -1).map(toEntry);
      await this.store.applyExport(client.clientId, { records, nextCursor: end.next_cursor, hashKey: header.hash_key });
      applied += records.length;
      if (end.more !== true) return applied;
    }
    return applied;
  }

  async linkByCode(lineAccessToken: string, typedCode: string): Promise<{ created: boolean; sub: string }> {
    const lineUser = await this.line.authenticate(lineAccessToken);
    const digits = typedCode.normalize('NFKC').replace(/[\s-]/g, '');
    if (!/^\d{8}$/.test(digits)) throw new ApiError(400, 'invalid_code', 'Enter the 8-digit link code from your account page.');
    if ((await this.store.countCodeAttempt(lineUser.userId, CODE_ATTEMPTS.windowSeconds, this.config.now())) > CODE_ATTEMPTS.limit) {
      throw new ApiError(429, 'too_many_attempts', 'Too many link code attempts. Wait 15 minutes, make a new code on your account page and try again.');
    }
    // The code was probably made a moment ago: take in the latest changes first.
    await this.sync();
    const state = await this.store.exportState(this.config.tsunagiExport?.clientId ?? '');
    const codeHash = state ? keyedHash(state.hashKey, 'code', digits) : '';
    const found = state ? await this.store.findLinkCode(codeHash) : undefined;
    if (!found) {
      throw new ApiError(400, 'invalid_code',
        'That link code is not right, was already used, or was replaced by a newer one. Make a new code on your account page and type it here.');
    }
    if (found.expiresAt <= this.config.now()) throw new ApiError(400, 'expired_code', 'That link code has expired. Make a new code on your account page and type it here.');
    try {
      const result = await this.store.linkByCode({ codeHash, lineUserId: lineUser.userId, sub: found.sub });
      return { created: result === 'linked', sub: found.sub };
    } catch (err) {
      if (!(err instanceof LinkRefused)) throw err;
      if (err.reason === 'line_user_linked_elsewhere') throw new ApiError(409, 'line_user_already_linked', 'This LINE account is already linked to another account. Unlink it first, then link again.');
      if (err.reason === 'account_linked_elsewhere') throw new ApiError(409, 'account_already_linked', 'This account is already linked to another LINE account. Unlink that LINE account first.');
      throw new ApiError(400, 'invalid_code', 'That link code was just used. Make a new code on your account page.');
    }
  }
}

function toEntry(line: Record<string, unknown>): ExportEntry {
  const sub = typeof line.sub === 'string' ? line.sub : undefined;
  if (!sub) throw new ApiError(502, 'tsunagi_unavailable', 'An export record has no sub.');
  if (line.type === 'tombstone') return { type: 'tombstone', sub };
  const strings = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
  return {
    type: 'account', sub, emailHashes: strings(line.email_hashes), phoneHashes: strings(line.phone_hashes),
    linkCodeHash: typeof line.link_code_hash === 'string' ? line.link_code_hash : null,
    linkCodeExpiresAt: typeof line.link_code_expires_at === 'string' ? new Date(line.link_code_expires_at) : null,
  };
}
