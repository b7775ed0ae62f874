import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import type pg from 'pg';
import { getOrCreateSecret } from '../db/app-secrets.js';
import type { MasterKeyring } from '../secrets/master-key.js';
import type { Queryable } from '../db/database.js';
import { AlreadyTaken } from './already-taken.js';

export type UpstreamProviderName = 'google' | 'apple';

/** A Google or Apple identity linked to an account. Keyed by (issuer, subject); email is an attribute. */
export interface UpstreamIdentity {
  id: string;
  accountId: string;
  provider: UpstreamProviderName;
  issuer: string;
  subject: string;
  email: string | null;
  emailVerified: boolean;
  isPrivateEmail: boolean;
  /** false after Apple said the relay address stopped forwarding (email-disabled). */
  emailDeliverable: boolean;
  name: string | null;
  hasRefreshToken: boolean;
  createdAt: Date;
  lastLoginAt: Date;
  /** Set while the provider's security events keep this identity from signing in or proving the account. */
  signInPaused: SignInPause | undefined;
}

/**
 * Why sign-in with an identity is paused: 'hijacking' (Google reported the account hijacked; only the
 * person lifts it, from the account page, after signing in another way) or the reason Google gave
 * for disabling the account otherwise ('disabled' when none), which Google's account-enabled lifts.
 */
export interface SignInPause { reason: string; since: Date }
export const HIJACKING_PAUSE = 'hijacking';

/** What upstream said at sign-in; everything but (issuer, subject) may change later. */
export interface UpstreamIdentityAttributes {
  email?: string | null | undefined;
  emailVerified: boolean;
  isPrivateEmail: boolean;
  /** Apple sends the name once, at the first authorization: undefined keeps what is stored. */
  name?: string | null | undefined;
  /** Apple's refresh token (undefined keeps the stored one). */
  refreshToken?: string | undefined;
}

export interface NewUpstreamIdentity extends UpstreamIdentityAttributes {
  provider: UpstreamProviderName;
  issuer: string;
  subject: string;
}

/** This (issuer, subject) is already linked, to `ownerAccountId` (maybe the same account). */
export class IdentityAlreadyLinked extends AlreadyTaken {
  constructor(readonly ownerAccountId: string) { super('this upstream identity is already linked to an account'); }
}

/** The account already has an identity of this provider (one Google and one Apple per account). */
export class ProviderAlreadyLinkedToAccount extends AlreadyTaken {
  constructor(readonly provider: UpstreamProviderName) { super(`this account already has a linked ${provider} identity`); }
}

interface Row {
  id: string; account_id: string; provider: UpstreamProviderName; issuer: string; subject: string; email: string | null;
  email_verified: boolean; is_private_email: boolean; email_deliverable: boolean; name: string | null;
  refresh_token_ciphertext: Buffer | null; created_at: Date; last_login_at: Date;
  sign_in_paused_at: Date | null; sign_in_paused_reason: string | null;
}

const toIdentity = (r: Row): UpstreamIdentity => ({
  id: r.id, accountId: r.account_id, provider: r.provider, issuer: r.issuer, subject: r.subject, email: r.email,
  emailVerified: r.email_verified, isPrivateEmail: r.is_private_email, emailDeliverable: r.email_deliverable, name: r.name,
  hasRefreshToken: r.refresh_token_ciphertext !== null, createdAt: r.created_at, lastLoginAt: r.last_login_at,
  signInPaused: r.sign_in_paused_at && r.sign_in_paused_reason ? { reason: r.sign_in_paused_reason, since: r.sign_in_paused_at } : undefined,
});

const SEALED_VERSION = 1;

/**
 * AES-256-GCM for upstream refresh tokens. The identity id is the associated data, so a sealed token
 * copied onto another row does not open. Layout: version (1) | iv (12) | tag (16) | ciphertext.
 */
export class UpstreamTokenCipher {
  private readonly key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== 32) throw new Error('the upstream token key must be 32 bytes');
    this.key = key;
  }

  /** The key itself is an app secret, sealed with the master key. */
  static async fromDatabase(pool: pg.Pool, keyring: MasterKeyring): Promise<UpstreamTokenCipher> {
    return new UpstreamTokenCipher(Buffer.from(await getOrCreateSecret(pool, keyring, 'upstream-token-key'), 'base64url'));
  }

  seal(plaintext: string, identityId: string): Buffer {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(identityId));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return Buffer.concat([Buffer.from([SEALED_VERSION]), iv, cipher.getAuthTag(), body]);
  }

  open(sealed: Buffer, identityId: string): string {
    if (sealed.length < 29 || sealed[0] !== SEALED_VERSION) throw new Error('unknown sealed token format');
    const decipher = createDecipheriv('aes-256-gcm', this.key, sealed.subarray(1, 13));
    decipher.setAAD(Buffer.from(identityId));
    decipher.setAuthTag(sealed.subarray(13, 29));
    return Buffer.concat([decipher.update(sealed.subarray(29)), decipher.final()]).toString('utf8');
  }
}

export class UpstreamIdentityStore {
  constructor(private readonly pool: pg.Pool, private readonly cipher: UpstreamTokenCipher) {}

  static async open(pool: pg.Pool, keyring: MasterKeyring): Promise<UpstreamIdentityStore> {
    return new UpstreamIdentityStore(pool, await UpstreamTokenCipher.fromDatabase(pool, keyring));
  }

  async findByIssuerSubject(issuer: string, subject: string, db: Queryable = this.pool): Promise<UpstreamIdentity | undefined> {
    const { rows } = await db.query<Row>('SELECT * FROM upstream_identities WHERE issuer = $1 AND subject = $2', [issuer, subject]);
    return rows[0] ? toIdentity(rows[0]) : undefined;
  }

  async listForAccount(accountId: string, db: Queryable = this.pool): Promise<UpstreamIdentity[]> {
    const { rows } = await db.query<Row>('SELECT * FROM upstream_identities WHERE account_id = $1 ORDER BY provider', [accountId]);
    return rows.map(toIdentity);
  }

  /**
   * Links the identity to the account. The database decides races: of two concurrent links of one
   * (issuer, subject), exactly one inserts. ON CONFLICT DO NOTHING (rather than catching 23505) keeps
   * the caller's transaction usable after a refusal.
   */
  async link(tx: Queryable | undefined, accountId: string, identity: NewUpstreamIdentity, now = new Date()): Promise<UpstreamIdentity> {
    const db = tx ?? this.pool;
    const id = randomUUID();
    const sealed = identity.refreshToken ? this.cipher.seal(identity.refreshToken, id) : null;
    const { rows } = await db.query<Row>(
      `INSERT INTO upstream_identities (id, account_id, provider, issuer, subject, email, email_verified, is_private_email, name,
                                        refresh_token_ciphertext, created_at, last_login_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
       ON CONFLICT DO NOTHING
       RETURNING *`,
      [id, accountId, identity.provider, identity.issuer, identity.subject, identity.email ?? null, identity.emailVerified,
        identity.isPrivateEmail, identity.name ?? null, sealed, now],
    );
    if (rows[0]) return toIdentity(rows[0]);
    const owner = await this.findByIssuerSubject(identity.issuer, identity.subject, db);
    if (owner) throw new IdentityAlreadyLinked(owner.accountId);
    throw new ProviderAlreadyLinkedToAccount(identity.provider);
  }

  /** Records what upstream said at this sign-in (email, name, relay flag, token) and when. */
  async refreshAttributes(id: string, attributes: UpstreamIdentityAttributes, now = new Date(), db: Queryable = this.pool): Promise<UpstreamIdentity | undefined> {
    const hasEmail = attributes.email !== undefined && attributes.email !== null;
    const sealed = attributes.refreshToken ? this.cipher.seal(attributes.refreshToken, id) : null;
    const { rows } = await db.query<Row>(
      `UPDATE upstream_identities SET
         email = CASE WHEN $2 THEN $3 ELSE email END,
         email_verified = CASE WHEN $2 THEN $4 ELSE email_verified END,
         is_private_email = CASE WHEN $2 THEN $5 ELSE is_private_email END,
         email_deliverable = CASE WHEN $2 AND email IS DISTINCT FROM $3 THEN true ELSE email_deliverable END,
         name = COALESCE($6, name),
         refresh_token_ciphertext = COALESCE($7, refresh_token_ciphertext),
         last_login_at = $8
       WHERE id = $1
       RETURNING *`,
      [id, hasEmail, attributes.email ?? null, attributes.emailVerified, attributes.isPrivateEmail, attributes.name ?? null, sealed, now],
    );
    return rows[0] ? toIdentity(rows[0]) : undefined;
  }

  /**
   * Removes the link and hands back the stored refresh token so the caller can revoke it at Apple.
   * Only the account's own identity: undefined when `id` is not linked to `accountId`.
   */
  async unlink(accountId: string, id: string, db: Queryable = this.pool): Promise<{ identity: UpstreamIdentity; refreshToken: string | undefined } | undefined> {
    const { rows } = await db.query<Row>('DELETE FROM upstream_identities WHERE id = $1 AND account_id = $2 RETURNING *', [id, accountId]);
    const row = rows[0];
    if (!row) return undefined;
    return { identity: toIdentity(row), refreshToken: this.openToken(row) };
  }

  /** Refresh tokens to revoke before an account is deleted (the rows go with the account). */
  async refreshTokensForAccount(accountId: string, db: Queryable = this.pool): Promise<Array<{ identity: UpstreamIdentity; refreshToken: string }>> {
    const { rows } = await db.query<Row>(
      'SELECT * FROM upstream_identities WHERE account_id = $1 AND refresh_token_ciphertext IS NOT NULL', [accountId]);
    return rows.flatMap((row) => {
      const refreshToken = this.openToken(row);
      return refreshToken ? [{ identity: toIdentity(row), refreshToken }] : [];
    });
  }

  /** Apple's email-disabled / email-enabled notifications for a relay address. */
  async setEmailDeliverable(issuer: string, subject: string, deliverable: boolean, db: Queryable = this.pool): Promise<UpstreamIdentity | undefined> {
    const { rows } = await db.query<Row>(
      'UPDATE upstream_identities SET email_deliverable = $3 WHERE issuer = $1 AND subject = $2 RETURNING *', [issuer, subject, deliverable]);
    return rows[0] ? toIdentity(rows[0]) : undefined;
  }

  /**
   * Pauses sign-in with the identity. A hijacking pause is never replaced by a milder one: only the
   * person lifts it. undefined when the identity is not linked.
   */
  async pauseSignIn(id: string, reason: string, now: Date, db: Queryable = this.pool): Promise<UpstreamIdentity | undefined> {
    const { rows } = await db.query<Row>(
      `UPDATE upstream_identities SET
         sign_in_paused_reason = CASE WHEN sign_in_paused_reason = $3 THEN sign_in_paused_reason ELSE $2 END,
         sign_in_paused_at = CASE WHEN sign_in_paused_reason = $3 THEN sign_in_paused_at ELSE $4 END
       WHERE id = $1 RETURNING *`,
      [id, reason, HIJACKING_PAUSE, now],
    );
    return rows[0] ? toIdentity(rows[0]) : undefined;
  }

  /**
   * Lifts the pause of the account's own identity: `hijacking` says which kind may be lifted (the
   * person lifts a hijacking pause, Google's account-enabled any other). false when nothing was lifted.
   */
  async resumeSignIn(accountId: string, id: string, which: 'hijacking' | 'other', db: Queryable = this.pool): Promise<boolean> {
    const r = await db.query(
      `UPDATE upstream_identities SET sign_in_paused_at = NULL, sign_in_paused_reason = NULL
       WHERE id = $1 AND account_id = $2 AND sign_in_paused_reason IS NOT NULL
         AND (sign_in_paused_reason = $3) = $4`,
      [id, accountId, HIJACKING_PAUSE, which === 'hijacking'],
    );
    return r.rowCount === 1;
  }

  // A token sealed under a lost or replaced key cannot be revoked any more; that must not block unlinking.
  private openToken(row: Row): string | undefined {
    if (!row.refresh_token_ciphertext) return undefined;
    try {
      return this.cipher.open(row.refresh_token_ciphertext, row.id);
    } catch {
      return undefined;
    }
  }
}
