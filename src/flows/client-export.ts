import { createHmac, randomInt, timingSafeEqual } from 'node:crypto';
import type { ClientExportStore } from '../accounts/client-export-store.js';

/**
 * Method 3 for LINE mini-apps: an incremental export for one client, so its backend can link a LINE
 * user without calling Tsunagi. A record says, for one account that chose to share with the app:
 * the `sub` the app knows (pairwise where it is), keyed hashes of the verified emails and phones
 * (so the backend can match what a person types without holding the addresses), and the keyed hash
 * and expiry of the person's current link code. Nothing in it lets anyone claim an account: the link
 * code is shown only to the signed-in person on Tsunagi's account page.
 */
export const LINK_CODE_TTL_SECONDS = 10 * 60;
export const EXPORT_PAGE_LIMIT = 1000;

export type ExportRecord =
  | { type: 'account'; sub: string; email_hashes: string[]; phone_hashes: string[]; link_code_hash: string | null; link_code_expires_at: string | null; cursor: string }
  | { type: 'tombstone'; sub: string; cursor: string };

export interface ClientExport {
  /** The client's own key for the keyed hashes (HMAC-SHA256, base64url): HMAC(key, "email:" + lower-cased address) and HMAC(key, "phone:" + E.164), HMAC(key, "code:" + 8 digits). */
  hashKey: string;
  records: ExportRecord[];
  /** Where the next pull starts; the same as `since` when nothing changed. */
  nextCursor: string;
  /** More records are waiting (the page limit was reached). */
  more: boolean;
}

export class InvalidCursor extends Error {
  constructor() {
    super('the cursor is not one Tsunagi issued to this client');
    this.name = 'InvalidCursor';
  }
}

const b64 = (buf: Buffer) => buf.toString('base64url');

export function keyedHash(hashKey: string, kind: 'email' | 'phone' | 'code', value: string): string {
  return b64(createHmac('sha256', Buffer.from(hashKey, 'base64url')).update(`${kind}:${value}`).digest());
}

/** 8 digits, shown as 1234-5678; the dash and spaces do not matter when typed. */
export function normaliseLinkCode(typed: string): string | undefined {
  const digits = typed.normalize('NFKC').replace(/[\s-]/g, '');
  return /^\d{8}$/.test(digits) ? digits : undefined;
}

export class ClientExporter {
  constructor(private readonly deps: {
    store: ClientExportStore;
    /** Deployment secret (app_secrets 'export-key'): derives each client's hash key and signs cursors. */
    secret: string;
    /** The sub the client sees for an account (pairwise where the client is). */
    subjectFor(accountId: string, clientId: string): Promise<string>;
    now?: () => Date;
  }) {}

  hashKeyFor(clientId: string): string {
    return b64(createHmac('sha256', this.deps.secret).update(`hash-key\0${clientId}`).digest());
  }

  /** `v1.<seq>.<mac>`: the position in the change log, bound to the client, tamper-evident. */
  cursorFor(clientId: string, seq: number): string {
    return `v1.${seq}.${b64(createHmac('sha256', this.deps.secret).update(`cursor\0${clientId}\0${seq}`).digest())}`;
  }

  parseCursor(clientId: string, cursor: string | undefined): number {
    if (cursor === undefined || cursor === '') return 0;
    const m = /^v1\.(\d{1,18})\.([A-Za-z0-9_-]{43})$/.exec(cursor);
    if (!m?.[1] || !m[2]) throw new InvalidCursor();
    const seq = Number(m[1]);
    const expected = Buffer.from(this.cursorFor(clientId, seq).split('.')[2] as string);
    const given = Buffer.from(m[2]);
    if (!Number.isSafeInteger(seq) || expected.length !== given.length || !timingSafeEqual(expected, given)) throw new InvalidCursor();
    return seq;
  }

  async exportSince(clientId: string, cursor: string | undefined, limit = EXPORT_PAGE_LIMIT): Promise<ClientExport> {
    const since = this.parseCursor(clientId, cursor);
    const hashKey = this.hashKeyFor(clientId);
    const rows = await this.deps.store.changesSince(clientId, since, limit);
    const records: ExportRecord[] = [];
    for (const row of rows) {
      const sub = await this.deps.subjectFor(row.accountId, clientId);
      const at = this.cursorFor(clientId, row.seq);
      if (row.kind === 'tombstone') {
        records.push({ type: 'tombstone', sub, cursor: at });
      } else {
        records.push({
          type: 'account', sub,
          email_hashes: row.emailKeys.map((e) => keyedHash(hashKey, 'email', e)),
          phone_hashes: row.phones.map((p) => keyedHash(hashKey, 'phone', p)),
          link_code_hash: row.linkCodeHash,
          link_code_expires_at: row.linkCodeExpiresAt?.toISOString() ?? null,
          cursor: at,
        });
      }
    }
    const last = rows.at(-1);
    return { hashKey, records, nextCursor: last ? this.cursorFor(clientId, last.seq) : (cursor || this.cursorFor(clientId, 0)), more: rows.length === limit };
  }

  /** A new link code for the signed-in person and this app (the previous one stops working). */
  async issueLinkCode(clientId: string, accountId: string): Promise<{ code: string; expiresAt: Date }> {
    const digits = String(randomInt(100_000_000)).padStart(8, '0');
    const expiresAt = new Date((this.deps.now?.() ?? new Date()).getTime() + LINK_CODE_TTL_SECONDS * 1000);
    await this.deps.store.issueLinkCode(clientId, accountId, keyedHash(this.hashKeyFor(clientId), 'code', digits), expiresAt);
    return { code: `${digits.slice(0, 4)}-${digits.slice(4)}`, expiresAt };
  }
}

const CSV_COLUMNS = ['type', 'sub', 'email_hashes', 'phone_hashes', 'link_code_hash', 'link_code_expires_at', 'cursor'] as const;

/** JSON Lines: a header with the hash key, one line per record, and a trailer with the next cursor. */
export function exportAsJsonLines(result: ClientExport): string {
  return [
    JSON.stringify({ type: 'header', hash_key: result.hashKey, hash: 'HMAC-SHA256 base64url of "email:<lower-cased address>", "phone:<E.164>", "code:<8 digits>"' }),
    ...result.records.map((r) => JSON.stringify(r)),
    JSON.stringify({ type: 'end', next_cursor: result.nextCursor, more: result.more }),
  ].join('\n') + '\n';
}

/** CSV (RFC 4180; hashes are base64url, so no quoting is ever needed): multiple hashes separated by spaces. */
export function exportAsCsv(result: ClientExport): string {
  const line = (r: ExportRecord) => CSV_COLUMNS.map((c) => {
    const v = (r as Record<string, unknown>)[c];
    return Array.isArray(v) ? v.join(' ') : v === null || v === undefined ? '' : String(v);
  }).join(',');
  return [CSV_COLUMNS.join(','), ...result.records.map(line)].join('\r\n') + '\r\n';
}
