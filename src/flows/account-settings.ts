import type pg from 'pg';
import { EmailAlreadyRegistered, PhoneAlreadyRegistered, type Account, type AccountStore } from '../accounts/account-store.js';
import { withTransaction } from '../db/database.js';
import type { Mailer } from '../delivery/mailer.js';
import { translator, type Locale } from '../i18n/index.js';
import type { Logger } from '../logger.js';
import type { Proof } from '../accounts/proof.js';
import type { RequestFacts } from './login.js';

/** Thrown inside a removal's transaction (rolling it back) when nothing would be left to sign in with. */
class LastWayIn extends Error {}

export type SettingsChange =
  | { ok: true }
  | { ok: false; reason: 'last_method' | 'not_found' | 'already_registered' | 'wrong_proof' };

/** What changed, for the audit log and the notification mail (message keys mail.notify.<kind>.*). */
export type ChangeKind = 'email_added' | 'email_removed' | 'email_primary' | 'phone_added' | 'phone_removed' | 'passkey_added' | 'passkey_removed' | 'grant_revoked'
  | 'upstream_linked' | 'upstream_unlinked' | 'upstream_paused' | 'upstream_resumed' | 'signup';

export interface PasskeyRemoval { remove(tx: pg.PoolClient, accountId: string, credentialId: string): Promise<boolean> }

/** Unlinking a Google/Apple identity; hands back what upstream needs to be told (Apple's refresh token). */
export interface UpstreamUnlinking {
  unlink(tx: pg.PoolClient, accountId: string, identityId: string): Promise<{ provider: string; refreshToken: string | undefined } | undefined>;
  /** Lifts a hijacking pause of the account's own identity (src/flows/google-risc.ts); false when there is none. */
  resumeAfterHijacking(tx: pg.PoolClient, accountId: string, identityId: string): Promise<boolean>;
}

/**
 * The account page's changes, each in one transaction that locks the account row: adding needs a
 * proof made for this account-page session; removing never leaves the account without a way to
 * sign in. Every change is audited and announced by mail to the account's primary address.
 */
export class AccountSettings {
  constructor(private readonly deps: {
    pool: pg.Pool;
    accounts: AccountStore;
    mailer: Mailer;
    log: Logger;
    passkeys?: PasskeyRemoval;
    upstream?: UpstreamUnlinking;
  }) {}

  /**
   * Removes a linked Google/Apple identity unless it is the last way to sign in. `revoke` runs after
   * the commit with the stored refresh token (Apple); its failure is logged, the unlink stands.
   */
  async unlinkUpstream(
    account: Account, identityId: string, facts: RequestFacts, locale: Locale, revoke: (provider: string, refreshToken: string) => Promise<void>,
  ): Promise<SettingsChange> {
    const unlinking = this.deps.upstream;
    if (!unlinking) return { ok: false, reason: 'not_found' };
    let removed: { provider: string; refreshToken: string | undefined } | undefined;
    const outcome = await this.removal(account, 'upstream_unlinked', { identity: identityId }, facts, locale, async (tx) => {
      removed = await unlinking.unlink(tx, account.id, identityId);
      return Boolean(removed);
    });
    if (outcome.ok && removed?.refreshToken) {
      try {
        await revoke(removed.provider, removed.refreshToken);
      } catch (err) {
        this.deps.log.warn({ err, provider: removed.provider }, 'could not revoke the upstream token after unlinking');
      }
    }
    return outcome;
  }

  /**
   * The person, signed in another way, turns sign-in with an identity Google reported hijacked back
   * on (they took their Google account back). Only a hijacking pause: Google's own disable is
   * lifted by Google's account-enabled.
   */
  async resumeUpstream(account: Account, identityId: string, facts: RequestFacts, locale: Locale): Promise<SettingsChange> {
    const upstream = this.deps.upstream;
    if (!upstream) return { ok: false, reason: 'not_found' };
    return this.change(account, 'upstream_resumed', { identity: identityId, provider: 'google' }, facts, locale, async (tx) =>
      (await upstream.resumeAfterHijacking(tx, account.id, identityId)) ? { ok: true } : { ok: false, reason: 'not_found' });
  }

  async addEmail(account: Account, binding: string, proof: Proof, facts: RequestFacts, locale: Locale): Promise<SettingsChange> {
    if (proof.interactionUid !== binding || proof.subject.kind !== 'email') return { ok: false, reason: 'wrong_proof' };
    const email = { address: proof.subject.address, key: proof.subject.key };
    return this.change(account, 'email_added', { email: email.address }, facts, locale, async (tx) => {
      try {
        await this.deps.accounts.addVerifiedEmail(tx, account.id, email);
        return { ok: true };
      } catch (err) {
        if (err instanceof EmailAlreadyRegistered) return { ok: false, reason: 'already_registered' };
        throw err;
      }
    });
  }

  async makePrimaryEmail(account: Account, emailKey: string, facts: RequestFacts, locale: Locale): Promise<SettingsChange> {
    return this.change(account, 'email_primary', { email: emailKey }, facts, locale, async (tx) =>
      (await this.deps.accounts.setPrimaryEmail(tx, account.id, emailKey)) ? { ok: true } : { ok: false, reason: 'not_found' });
  }

  async removeEmail(account: Account, emailKey: string, facts: RequestFacts, locale: Locale): Promise<SettingsChange> {
    return this.removal(account, 'email_removed', { email: emailKey }, facts, locale, (tx) => this.deps.accounts.removeEmail(tx, account.id, emailKey));
  }

  async addPhone(account: Account, binding: string, proof: Proof, facts: RequestFacts, locale: Locale): Promise<SettingsChange> {
    if (proof.interactionUid !== binding || proof.subject.kind !== 'phone') return { ok: false, reason: 'wrong_proof' };
    const { phone } = proof.subject;
    return this.change(account, 'phone_added', { phone }, facts, locale, async (tx) => {
      try {
        await this.deps.accounts.addVerifiedPhone(tx, account.id, phone);
        return { ok: true };
      } catch (err) {
        if (err instanceof PhoneAlreadyRegistered) return { ok: false, reason: 'already_registered' };
        throw err;
      }
    });
  }

  async removePhone(account: Account, phone: string, facts: RequestFacts, locale: Locale): Promise<SettingsChange> {
    return this.removal(account, 'phone_removed', { phone }, facts, locale, (tx) => this.deps.accounts.removePhone(tx, account.id, phone));
  }

  async removePasskey(account: Account, credentialId: string, facts: RequestFacts, locale: Locale): Promise<SettingsChange> {
    const passkeys = this.deps.passkeys;
    if (!passkeys) return { ok: false, reason: 'not_found' };
    return this.removal(account, 'passkey_removed', { credential: credentialId }, facts, locale, (tx) => passkeys.remove(tx, account.id, credentialId));
  }

  /** Records a change made elsewhere (e.g. a passkey registered by the WebAuthn ceremony) and announces it. */
  async announce(account: Account, kind: ChangeKind, data: Record<string, unknown>, facts: RequestFacts, locale: Locale): Promise<void> {
    await this.deps.accounts.recordAuditEvent({ type: kind, accountId: account.id, ...facts, data });
    await this.notify(account, kind, locale);
  }

  private async removal(
    account: Account, kind: ChangeKind, data: Record<string, unknown>, facts: RequestFacts, locale: Locale,
    remove: (tx: pg.PoolClient) => Promise<boolean>,
  ): Promise<SettingsChange> {
    try {
      return await this.change(account, kind, data, facts, locale, async (tx) => {
        // The account row is locked: two removals cannot both see "one more method left". Counted
        // after the removal, which the throw rolls back: what is left must still sign in (an
        // identity Google paused does not), whatever was removed (a paused identity may go).
        if (!(await remove(tx))) return { ok: false, reason: 'not_found' };
        if ((await this.deps.accounts.countSignInMethods(account.id, tx)) < 1) throw new LastWayIn();
        return { ok: true };
      });
    } catch (err) {
      if (err instanceof LastWayIn) return { ok: false, reason: 'last_method' };
      throw err;
    }
  }

  private async change(
    account: Account, kind: ChangeKind, data: Record<string, unknown>, facts: RequestFacts, locale: Locale,
    apply: (tx: pg.PoolClient) => Promise<SettingsChange>,
  ): Promise<SettingsChange> {
    const outcome = await withTransaction(this.deps.pool, async (tx) => {
      if (!(await this.deps.accounts.lockAccount(tx, account.id))) return { ok: false, reason: 'not_found' } as const;
      const result = await apply(tx);
      if (result.ok) await this.deps.accounts.recordAuditEvent({ type: kind, accountId: account.id, ...facts, data }, tx);
      return result;
    });
    if (outcome.ok) await this.notify(account, kind, locale);
    return outcome;
  }

  // A notification that fails to send does not undo the change; it is logged.
  async notify(account: Account, kind: ChangeKind, locale: Locale): Promise<void> {
    const fresh = (await this.deps.accounts.findAccountById(account.id)) ?? account;
    const to = fresh.emails.find((e) => e.isPrimary && e.verifiedAt)?.address;
    if (!to) return;
    const t = translator(locale);
    try {
      await this.deps.mailer.send({ to, subject: t(`mail.notify.${kind}.subject`), text: t(`mail.notify.${kind}.body`) + t('mail.notify.footer') });
    } catch (err) {
      this.deps.log.warn({ err, kind }, 'could not send the change notification');
    }
  }
}
