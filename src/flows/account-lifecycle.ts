import type pg from 'pg';
import type { AccountLifecycleStore } from '../accounts/account-lifecycle-store.js';
import { isUuid, type Account, type AccountStore, type AuditEventType, type StoredAuditEvent } from '../accounts/account-store.js';
import { parseEmailAddress } from '../accounts/email-address.js';
import { parsePhoneNumber } from '../accounts/phone-number.js';
import type { PasskeyStore, PasskeySummary } from '../accounts/passkey-store.js';
import type { UpstreamIdentity, UpstreamIdentityStore, UpstreamProviderName } from '../accounts/upstream-identity-store.js';
import { withTransaction } from '../db/database.js';
import type { Mailer } from '../delivery/mailer.js';
import { translator, type Locale } from '../i18n/index.js';
import type { Logger } from '../logger.js';
import type { SessionSummary } from '../oidc/adapter/account-artifacts.js';
import type { GrantSummary } from '../oidc/adapter/grant-lookup.js';

// An account's life after signup, for the person (/account), operators (the CLI) and support tools
// (the Admin API): find, show, disable/enable, delete, unlink, end sessions, export. One function per
// operation; each takes who is acting and writes it into the audit event.

/**
 * Who is acting: the person themself (the account page), an operator at the CLI (`name` is what
 * TSUNAGI_OPERATOR or the OS user says), or a support tool through the Admin API (its client id).
 */
export type Actor =
  | { kind: 'person'; ip?: string | undefined; userAgent?: string | undefined }
  | { kind: 'operator'; name: string }
  | { kind: 'admin_client'; clientId: string; ip?: string | undefined };

/** The actor as written into audit data: 'person', 'cli:<name>' or 'admin:<client id>'. */
export function actorLabel(actor: Actor): string {
  return actor.kind === 'person' ? 'person' : actor.kind === 'operator' ? `cli:${actor.name}` : `admin:${actor.clientId}`;
}

/** How an account is looked for. `sub` with `clientId` is the sub that client sees (pairwise or public). */
export type AccountQuery =
  | { email: string }
  | { phone: string }
  | { sub: string; clientId?: string | undefined }
  | { issuer: string; subject: string };

export interface AccountSummary {
  id: string;
  createdAt: Date;
  disabledAt: Date | null;
  primaryEmail: string | null;
  emails: string[];
  phones: string[];
  providers: UpstreamProviderName[];
}

export interface LinkedProviderView {
  id: string; provider: UpstreamProviderName; issuer: string; subject: string; email: string | null; isPrivateEmail: boolean;
  linkedAt: Date; lastSignInAt: Date; signInPaused: string | null; holdsRefreshToken: boolean;
}

export interface AccountDetails extends AccountSummary {
  name: string | null;
  updatedAt: Date;
  disabledReason: string | null;
  passkeys: PasskeySummary[];
  links: LinkedProviderView[];
  sessions: SessionSummary[];
  grants: GrantSummary[];
  recentAudit: StoredAuditEvent[];
}

export type LifecycleRefusal = 'not_found' | 'already_disabled' | 'not_disabled' | 'last_method';
export type LifecycleOutcome<T> = ({ ok: true } & T) | { ok: false; reason: LifecycleRefusal };

export interface EndedSessions { sessions: number; grants: number; logouts: Array<{ clientId: string; ok: boolean }> }

export interface DeletedAccount extends EndedSessions {
  /** Apple refresh tokens Tsunagi held and revoked at Apple (failed: could not be revoked, logged). */
  appleTokens: { revoked: number; failed: number };
  /** The former primary address the confirmation went to (undefined when there was none or it failed). */
  confirmationSentTo: string | undefined;
}

/** Everything Tsunagi stores about a person (APPI / GDPR access), without secrets or key material. */
export interface PersonalDataExport {
  format: 'tsunagi-personal-data/1';
  exportedAt: string;
  account: { id: string; name: string | null; createdAt: string; updatedAt: string; disabled: boolean };
  emails: Array<{ address: string; primary: boolean; verifiedAt: string | null }>;
  phones: Array<{ number: string; verifiedAt: string | null }>;
  passkeys: Array<{ credentialId: string; name: string; deviceType: string; backedUp: boolean; transports: string[]; createdAt: string; lastUsedAt: string | null }>;
  linkedProviders: Array<{ provider: string; issuer: string; subject: string; email: string | null; isPrivateEmail: boolean; name: string | null; linkedAt: string; lastSignInAt: string }>;
  applications: Array<{ clientId: string; clientName: string; scope: string; grantedAt: string }>;
  sessions: Array<{ signedInAt: string | null; methods: string[]; applications: string[]; expiresAt: string | null }>;
  auditEvents: Array<{ type: string; at: string; clientId: string | null; ip: string | null; userAgent: string | null; data: Record<string, unknown> }>;
}

/**
 * What oidc-provider holds for an account (browser sessions, grants and their tokens), reached
 * through the composition root (src/services.ts wires src/oidc/adapter/ and src/oidc/backchannel-logout.ts).
 */
export interface AccountArtifacts {
  listSessions(accountId: string): Promise<SessionSummary[]>;
  listGrants(accountId: string): Promise<GrantSummary[]>;
  /** Accounts with a grant to this client: where a pairwise sub is looked for first. */
  accountIdsWithGrantsFor(clientId: string): Promise<string[]>;
  /** Every session ended, every grant revoked, back-channel logout sent. */
  endEverywhere(accountId: string): Promise<EndedSessions>;
}

export interface AccountLifecycleDeps {
  pool: pg.Pool;
  artifacts: AccountArtifacts;
  accounts: AccountStore;
  store: AccountLifecycleStore;
  identities: UpstreamIdentityStore;
  passkeys: PasskeyStore;
  /** The sub a client sees for an account; undefined when the client is unknown. */
  subjectFor(clientId: string): Promise<((accountId: string) => string) | undefined>;
  /** The client's display name (data export); undefined when unknown. */
  clientName(clientId: string): Promise<string | undefined>;
  /** Revokes an Apple refresh token at Apple; absent when Apple is not configured. */
  revokeAppleToken?: ((refreshToken: string) => Promise<void>) | undefined;
  mailer: Mailer;
  log: Logger;
  auditRetentionDays: number;
  /** How a phone number typed without a country code is read (DEFAULT_PHONE_REGION). */
  defaultPhoneRegion: string;
  now?: () => Date;
}

/** Thrown inside a transaction to roll it back when nothing would be left to sign in with. */
class LastWayIn extends Error {}

export class AccountLifecycle {
  constructor(private readonly deps: AccountLifecycleDeps) {}

  private now(): Date { return this.deps.now?.() ?? new Date(); }

  private async audit(type: AuditEventType, accountId: string | null, actor: Actor, data: Record<string, unknown> = {}, db?: pg.PoolClient): Promise<void> {
    await this.deps.accounts.recordAuditEvent({
      type, accountId,
      clientId: actor.kind === 'admin_client' ? actor.clientId : null,
      ip: actor.kind === 'operator' ? null : actor.ip ?? null,
      userAgent: actor.kind === 'person' ? actor.userAgent ?? null : null,
      data: { ...data, actor: actorLabel(actor) },
    }, db);
  }

  /** Accounts matching the query (at most one, since emails, phones, identities and subs are unique). Audited without the value searched for. */
  async findAccounts(query: AccountQuery, actor: Actor): Promise<AccountSummary[]> {
    const accountId = await this.findAccountId(query);
    const account = accountId ? await this.deps.accounts.findAccountById(accountId) : undefined;
    await this.audit('account_viewed', account?.id ?? null, actor, { search: Object.keys(query).sort().join('+'), found: Boolean(account) });
    return account ? [await this.summaryOf(account)] : [];
  }

  private async findAccountId(query: AccountQuery): Promise<string | undefined> {
    if ('email' in query) {
      const email = parseEmailAddress(query.email);
      return email ? (await this.deps.accounts.findAccountByVerifiedEmail(email))?.id : undefined;
    }
    if ('phone' in query) {
      const phone = parsePhoneNumber(query.phone, this.deps.defaultPhoneRegion);
      return phone ? (await this.deps.accounts.findAccountByVerifiedPhone(phone))?.id : undefined;
    }
    if ('issuer' in query) return (await this.deps.identities.findByIssuerSubject(query.issuer, query.subject))?.accountId;
    if (!query.clientId) return isUuid(query.sub) ? query.sub : undefined;
    const subjectOf = await this.deps.subjectFor(query.clientId);
    if (!subjectOf) return undefined;
    // A pairwise sub is a one-way hash of the account id: the accounts that granted this client are
    // tried first, then (a grant may have expired) every account, a page at a time.
    for (const id of await this.deps.artifacts.accountIdsWithGrantsFor(query.clientId)) if (subjectOf(id) === query.sub) return id;
    let after: string | null = null;
    for (;;) {
      const page = await this.deps.store.accountIdsAfter(after, 1000);
      for (const id of page) if (subjectOf(id) === query.sub) return id;
      if (page.length < 1000) return undefined;
      after = page[page.length - 1] ?? null;
    }
  }

  private async summaryOf(account: Account): Promise<AccountSummary> {
    const links = await this.deps.identities.listForAccount(account.id);
    const verified = account.emails.filter((e) => e.verifiedAt);
    return {
      id: account.id, createdAt: account.createdAt, disabledAt: account.disabledAt,
      primaryEmail: verified.find((e) => e.isPrimary)?.address ?? null,
      emails: verified.map((e) => e.address),
      phones: account.phones.filter((p) => p.verifiedAt).map((p) => p.phone),
      providers: links.map((l) => l.provider),
    };
  }

  /** Methods, links, sessions, grants and the latest audit events of an account; undefined when unknown. */
  async showAccount(accountId: string, actor: Actor): Promise<AccountDetails | undefined> {
    const account = await this.deps.accounts.findAccountById(accountId);
    if (!account) return undefined;
    const [summary, passkeys, links, sessions, grants, recentAudit, disabledReason] = await Promise.all([
      this.summaryOf(account),
      this.deps.passkeys.listForAccount(account.id),
      this.deps.identities.listForAccount(account.id),
      this.deps.artifacts.listSessions(account.id),
      this.deps.artifacts.listGrants(account.id),
      this.deps.accounts.listAuditEvents({ accountId: account.id, limit: 20 }),
      this.deps.store.disabledReason(account.id),
    ]);
    await this.audit('account_viewed', account.id, actor);
    return {
      ...summary, name: account.name, updatedAt: account.updatedAt, disabledReason,
      passkeys, links: links.map(linkView), sessions, grants, recentAudit,
    };
  }

  /**
   * Disables the account: no method signs in to it any more (src/flows/login.ts), findAccount stops
   * answering for it (its tokens stop working), and its sessions and grants end at once (with
   * back-channel logout to the relying parties that asked for it).
   */
  async disableAccount(accountId: string, actor: Actor, reason = 'operator'): Promise<LifecycleOutcome<EndedSessions>> {
    if (!isUuid(accountId)) return { ok: false, reason: 'not_found' };
    const changed = await withTransaction(this.deps.pool, async (tx) => {
      if (!(await this.deps.accounts.lockAccount(tx, accountId))) return 'not_found' as const;
      if (!(await this.deps.store.setDisabled(tx, accountId, { reason: reason.slice(0, 200), at: this.now() }))) return 'already_disabled' as const;
      await this.audit('account_disabled', accountId, actor, { reason: reason.slice(0, 200) }, tx);
      return 'ok' as const;
    });
    if (changed !== 'ok') return { ok: false, reason: changed };
    return { ok: true, ...(await this.endAll(accountId)) };
  }

  async enableAccount(accountId: string, actor: Actor): Promise<LifecycleOutcome<Record<never, never>>> {
    if (!isUuid(accountId)) return { ok: false, reason: 'not_found' };
    const changed = await withTransaction(this.deps.pool, async (tx) => {
      if (!(await this.deps.accounts.lockAccount(tx, accountId))) return 'not_found' as const;
      if (!(await this.deps.store.setDisabled(tx, accountId, null))) return 'not_disabled' as const;
      await this.audit('account_enabled', accountId, actor, {}, tx);
      return 'ok' as const;
    });
    return changed === 'ok' ? { ok: true } : { ok: false, reason: changed };
  }

  /** Signs the account out everywhere: sessions, grants and their tokens, with back-channel logout. */
  async endSessions(accountId: string, actor: Actor): Promise<LifecycleOutcome<EndedSessions>> {
    if (!(await this.deps.accounts.findAccountById(accountId))) return { ok: false, reason: 'not_found' };
    const ended = await this.endAll(accountId);
    await this.audit('sessions_ended', accountId, actor, { sessions: ended.sessions, grants: ended.grants });
    return { ok: true, ...ended };
  }

  private async endAll(accountId: string): Promise<EndedSessions> {
    return this.deps.artifacts.endEverywhere(accountId);
  }

  /**
   * Unlinks the account's Google or Apple identity (an operator's action; the person has the account
   * page), unless it is the last way to sign in; Apple's refresh token is revoked after the commit.
   */
  async unlinkProvider(accountId: string, provider: UpstreamProviderName, actor: Actor): Promise<LifecycleOutcome<{ appleTokenRevoked: boolean }>> {
    if (!isUuid(accountId)) return { ok: false, reason: 'not_found' };
    let refreshToken: string | undefined;
    try {
      const outcome = await withTransaction(this.deps.pool, async (tx) => {
        if (!(await this.deps.accounts.lockAccount(tx, accountId))) return 'not_found' as const;
        const identity = (await this.deps.identities.listForAccount(accountId, tx)).find((i) => i.provider === provider);
        if (!identity) return 'not_found' as const;
        const removed = await this.deps.identities.unlink(accountId, identity.id, tx);
        if (!removed) return 'not_found' as const;
        if ((await this.deps.accounts.countSignInMethods(accountId, tx)) < 1) throw new LastWayIn();
        refreshToken = removed.refreshToken;
        await this.audit('upstream_unlinked', accountId, actor, { identity: identity.id, provider }, tx);
        return 'ok' as const;
      });
      if (outcome !== 'ok') return { ok: false, reason: outcome };
    } catch (err) {
      if (err instanceof LastWayIn) return { ok: false, reason: 'last_method' };
      throw err;
    }
    const revoked = provider === 'apple' && refreshToken ? await this.revokeApple([refreshToken]) : { revoked: 0, failed: 0 };
    return { ok: true, appleTokenRevoked: revoked.revoked > 0 };
  }

  private async revokeApple(tokens: string[]): Promise<{ revoked: number; failed: number }> {
    let revoked = 0;
    let failed = 0;
    for (const token of tokens) {
      try {
        if (!this.deps.revokeAppleToken) throw new Error('Apple is not configured');
        await this.deps.revokeAppleToken(token);
        revoked += 1;
      } catch (err) {
        failed += 1;
        this.deps.log.warn({ err }, 'could not revoke an Apple refresh token');
      }
    }
    return { revoked, failed };
  }

  /**
   * Deletes the account, at once (no grace period: README "Account lifecycle"). In order: the account
   * is disabled (no new sign-in can race the rest), every session and grant ends with back-channel
   * logout, then one transaction strips personal details from its audit events, records the deletion
   * and removes the account with its emails, phones, passkeys and Google/Apple links. After the commit
   * the Apple refresh tokens Tsunagi held are revoked at Apple and a confirmation goes to the former
   * primary address. Its email, phone and upstream identities are then free to sign up again.
   */
  async deleteAccount(accountId: string, actor: Actor, locale: Locale = 'en'): Promise<LifecycleOutcome<DeletedAccount>> {
    const account = isUuid(accountId) ? await this.deps.accounts.findAccountById(accountId) : undefined;
    if (!account) return { ok: false, reason: 'not_found' };
    const formerPrimary = account.emails.find((e) => e.isPrimary && e.verifiedAt)?.address;
    const appleTokens = (await this.deps.identities.refreshTokensForAccount(account.id))
      .filter((t) => t.identity.provider === 'apple').map((t) => t.refreshToken);

    await withTransaction(this.deps.pool, async (tx) => {
      if (await this.deps.accounts.lockAccount(tx, account.id)) await this.deps.store.setDisabled(tx, account.id, { reason: 'deleting', at: this.now() });
    });
    const ended = await this.endAll(account.id);
    const deleted = await withTransaction(this.deps.pool, async (tx) => {
      if (!(await this.deps.accounts.lockAccount(tx, account.id))) return false;
      const removed = await this.deps.store.deleteAccount(tx, account.id);
      // Recorded after the scrub, and like the scrubbed events without IP address or browser: counts only.
      await this.audit('account_deleted', account.id, anonymous(actor), {
        sessions: ended.sessions, grants: ended.grants, appleTokens: appleTokens.length,
      }, tx);
      return removed;
    });
    if (!deleted) return { ok: false, reason: 'not_found' };

    const apple = await this.revokeApple(appleTokens);
    let confirmationSentTo: string | undefined;
    if (formerPrimary) {
      const t = translator(locale);
      try {
        await this.deps.mailer.send({ to: formerPrimary, subject: t('mail.account_deleted.subject'), text: t('mail.account_deleted.body') });
        confirmationSentTo = formerPrimary;
      } catch (err) {
        this.deps.log.warn({ err }, 'could not send the deletion confirmation');
      }
    }
    return { ok: true, ...ended, appleTokens: apple, confirmationSentTo };
  }

  /** Everything stored about the person, as one JSON document; undefined when the account is unknown. */
  async exportPersonalData(accountId: string, actor: Actor): Promise<PersonalDataExport | undefined> {
    const account = await this.deps.accounts.findAccountById(accountId);
    if (!account) return undefined;
    const [passkeys, links, grants, sessions, events] = await Promise.all([
      this.deps.passkeys.listForAccount(account.id),
      this.deps.identities.listForAccount(account.id),
      this.deps.artifacts.listGrants(account.id),
      this.deps.artifacts.listSessions(account.id),
      this.deps.store.auditEventsOfAccount(account.id),
    ]);
    const applications = [];
    for (const g of grants) {
      applications.push({ clientId: g.clientId, clientName: (await this.deps.clientName(g.clientId)) ?? g.clientId, scope: g.scope, grantedAt: g.grantedAt.toISOString() });
    }
    await this.audit('data_exported', account.id, actor);
    const iso = (d: Date | null) => (d ? d.toISOString() : null);
    return {
      format: 'tsunagi-personal-data/1',
      exportedAt: this.now().toISOString(),
      account: { id: account.id, name: account.name, createdAt: account.createdAt.toISOString(), updatedAt: account.updatedAt.toISOString(), disabled: account.disabledAt !== null },
      emails: account.emails.map((e) => ({ address: e.address, primary: e.isPrimary, verifiedAt: iso(e.verifiedAt) })),
      phones: account.phones.map((p) => ({ number: p.phone, verifiedAt: iso(p.verifiedAt) })),
      // The credential id and its metadata; never the public key (useless to the person, and key material).
      passkeys: passkeys.map((p) => ({
        credentialId: p.id, name: p.name, deviceType: p.deviceType, backedUp: p.backedUp, transports: p.transports,
        createdAt: p.createdAt.toISOString(), lastUsedAt: iso(p.lastUsedAt),
      })),
      // Never the Apple refresh token.
      linkedProviders: links.map((l) => ({
        provider: l.provider, issuer: l.issuer, subject: l.subject, email: l.email, isPrivateEmail: l.isPrivateEmail, name: l.name,
        linkedAt: l.createdAt.toISOString(), lastSignInAt: l.lastLoginAt.toISOString(),
      })),
      applications,
      sessions: sessions.map((s) => ({ signedInAt: iso(s.signedInAt), methods: s.amr, applications: s.clientIds, expiresAt: iso(s.expiresAt) })),
      auditEvents: events.map((e) => ({ type: e.type, at: e.createdAt.toISOString(), clientId: e.clientId, ip: e.ip, userAgent: e.userAgent, data: e.data })),
    };
  }

  /** Audit events in [from, to) (of one account, or all), oldest first. The export itself is audited. */
  async exportAuditEvents(period: { from: Date; to: Date; accountId?: string | undefined }, actor: Actor): Promise<StoredAuditEvent[]> {
    if (period.accountId !== undefined && !isUuid(period.accountId)) return [];
    const events = await this.deps.store.auditEventsBetween(period);
    await this.audit('audit_exported', period.accountId ?? null, actor, { from: period.from.toISOString(), to: period.to.toISOString(), events: events.length });
    return events;
  }

  /** Deletes audit events older than the retention period (AUDIT_RETENTION_DAYS); returns how many. */
  async sweepAuditEvents(now = this.now()): Promise<number> {
    return this.deps.store.sweepAuditEvents(new Date(now.getTime() - this.deps.auditRetentionDays * 86_400_000));
  }
}

/** The actor without where it acted from (the deletion's own event keeps nothing that locates the person). */
function anonymous(actor: Actor): Actor {
  return actor.kind === 'person' ? { kind: 'person' } : actor.kind === 'admin_client' ? { kind: 'admin_client', clientId: actor.clientId } : actor;
}

function linkView(i: UpstreamIdentity): LinkedProviderView {
  return {
    id: i.id, provider: i.provider, issuer: i.issuer, subject: i.subject, email: i.email, isPrivateEmail: i.isPrivateEmail,
    linkedAt: i.createdAt, lastSignInAt: i.lastLoginAt, signInPaused: i.signInPaused?.reason ?? null, holdsRefreshToken: i.hasRefreshToken,
  };
}
