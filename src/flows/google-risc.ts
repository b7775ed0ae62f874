import type pg from 'pg';
import type { AccountStore, AuditEventType } from '../accounts/account-store.js';
import type { HandledEvent, HandledEventStore } from '../accounts/handled-event-store.js';
import { HIJACKING_PAUSE, type UpstreamIdentityStore } from '../accounts/upstream-identity-store.js';
import type { GoogleSecurityEvent } from '../upstream/google-risc.js';
import { handleEventOnce } from './provider-events.js';
import { FEDERATED_AMR } from './upstream.js';

/**
 * Google Cross-Account Protection (RISC), after the Security Event Token was verified
 * (src/upstream/google-risc.ts). The event names a Google identity by (issuer, sub), the key Tsunagi
 * links identities by. What Tsunagi does, and why:
 *
 * - account-disabled, reason "hijacking": someone else controls the Google account. It may neither
 *   sign in nor serve as proof of owning the account (the link screen) until the person, signed in
 *   another way, turns it back on from the account page (Google's account-enabled does not: the
 *   attacker may be the one who got it enabled). The sessions that began with it end, with the
 *   grants they authorized; the person is mailed.
 * - account-disabled (another reason, or none), account-purged: Google no longer vouches for the
 *   identity, so it is unlinked (as Apple's account-delete) and the sessions that began with it end
 *   with their grants. One exception: when the identity is the account's last way to sign in and the
 *   account is only disabled, it is paused instead, so Google's account-enabled can give the person
 *   their account back (an unlink would strand it).
 * - account-enabled: lifts such a pause (never a hijacking one).
 * - sessions-revoked, tokens-revoked: the sessions that began with the identity before the event end;
 *   grants stay (relying parties keep their tokens; Google revoked its own).
 * - account-credential-change-required: the same as sessions-revoked. Not a step-up at the next Google
 *   sign-in: Google itself refuses that sign-in until the password is changed, so the next ID token
 *   already comes after the change; a step-up of ours would only lock out people whose only way in
 *   is Google. The event is audited so an operator can see it.
 * - verification: recorded (202), nothing else.
 *
 * Every SET is handled once by its jti (src/flows/provider-events.ts): a redelivery changes nothing.
 */
export interface GoogleRiscDeps {
  pool: pg.Pool;
  accounts: AccountStore;
  identities: UpstreamIdentityStore;
  handled: HandledEventStore;
  /** The issuer Google identities are stored under (the configured Google issuer). */
  googleIssuer: string;
  /** Ends the sessions that began with this identity (before `before` when given), and with `withGrants` the grants they authorized. */
  endSessions: (accountId: string, identity: { issuer: string; subject: string }, opts: { before?: Date; withGrants: boolean }) => Promise<void>;
  /** Tells the person Google sign-in was paused (after the commit; a failure is logged, not retried). */
  notifyPaused: (accountId: string) => Promise<void>;
  now?: () => Date;
}

/**
 * Which stored sessions began with an identity: their latest sign-in (loginTs, as src/flows/login.ts
 * records it with the identities it went through) is one of `signInTimes`, and, for an event about
 * sessions up to a moment, not after `before`. A session signed in again another way since is kept.
 */
export function sessionsBegunWith(signInTimes: number[], before: Date | undefined): (session: { loginTs?: number; amr?: string[] }) => boolean {
  const times = new Set(signInTimes);
  const until = before ? Math.floor(before.getTime() / 1000) : Infinity;
  return (s) => typeof s.loginTs === 'number' && times.has(s.loginTs) && s.loginTs <= until && (s.amr ?? []).includes(FEDERATED_AMR);
}

export type GoogleRiscOutcome =
  | 'paused_hijacking' | 'paused_disabled' | 'unlinked' | 'sessions_ended' | 'resumed'
  | 'verified' | 'unknown_subject' | 'nothing_to_resume' | 'already_paused';

/** Outcomes that end sessions after the commit, and whether the grants of those sessions end too. */
const ENDS_SESSIONS: Partial<Record<string, { withGrants: boolean; beforeEvent: boolean }>> = {
  paused_hijacking: { withGrants: true, beforeEvent: false },
  paused_disabled: { withGrants: true, beforeEvent: false },
  unlinked: { withGrants: true, beforeEvent: false },
  sessions_ended: { withGrants: false, beforeEvent: true },
};

export async function handleGoogleSecurityEvent(deps: GoogleRiscDeps, event: GoogleSecurityEvent): Promise<{ outcome: GoogleRiscOutcome | 'duplicate'; accountId?: string }> {
  const now = () => deps.now?.() ?? new Date();
  const subject = event.subject;
  return handleEventOnce<GoogleRiscOutcome>(
    { pool: deps.pool, handled: deps.handled, now: deps.now },
    { key: event.jti, type: event.type, subject: subject?.subject ?? '', time: event.issuedAt },
    async (tx) => {
      const identity = subject && subject.issuer === deps.googleIssuer
        ? await deps.identities.findByIssuerSubject(subject.issuer, subject.subject, tx) : undefined;
      if (event.type === 'verification') return { outcome: 'verified', accountId: undefined, apply: async () => undefined };
      if (!identity || identity.provider !== 'google') return { outcome: 'unknown_subject', accountId: undefined, apply: async () => undefined };
      const accountId = identity.accountId;
      // Serialised with the account page's own changes to sign-in methods.
      await deps.accounts.lockAccount(tx, accountId);
      const audit = (type: AuditEventType, data: Record<string, unknown> = {}) => deps.accounts.recordAuditEvent({
        type, accountId, data: { provider: 'google', by: 'google_risc', event: event.type, ...data },
      }, tx);

      const hijacked = event.type === 'account-disabled' && event.reason === HIJACKING_PAUSE;
      if (hijacked) {
        return { outcome: 'paused_hijacking', accountId, apply: async (tx) => {
          await deps.identities.pauseSignIn(identity.id, HIJACKING_PAUSE, now(), tx);
          await audit('upstream_paused', { reason: HIJACKING_PAUSE });
        } };
      }
      if (event.type === 'account-disabled' || event.type === 'account-purged') {
        // The ways in besides this identity (a paused identity is not counted as one).
        const others = (await deps.accounts.countSignInMethods(accountId, tx)) - (identity.signInPaused ? 0 : 1);
        if (event.type === 'account-disabled' && others === 0) {
          if (identity.signInPaused?.reason === HIJACKING_PAUSE) {
            return { outcome: 'already_paused', accountId, apply: () => audit('upstream_notification_ignored', { reason: 'already_paused' }) };
          }
          const reason = event.reason ?? 'disabled';
          return { outcome: 'paused_disabled', accountId, apply: async (tx) => {
            await deps.identities.pauseSignIn(identity.id, reason, now(), tx);
            await audit('upstream_paused', { reason });
          } };
        }
        return { outcome: 'unlinked', accountId, apply: async (tx) => {
          await deps.identities.unlink(accountId, identity.id, tx);
          await audit('upstream_unlinked', { identity: identity.id, lastMethod: others === 0, reason: event.reason });
        } };
      }
      if (event.type === 'account-enabled') {
        const liftable = identity.signInPaused && identity.signInPaused.reason !== HIJACKING_PAUSE;
        if (!liftable) return { outcome: 'nothing_to_resume', accountId, apply: () => audit('upstream_notification_ignored', { reason: 'nothing_to_resume' }) };
        return { outcome: 'resumed', accountId, apply: async (tx) => {
          await deps.identities.resumeSignIn(accountId, identity.id, 'other', tx);
          await audit('upstream_resumed');
        } };
      }
      // sessions-revoked, tokens-revoked, account-credential-change-required
      return { outcome: 'sessions_ended', accountId, apply: () => audit('upstream_sessions_ended') };
    },
    {
      needed: (outcome) => ENDS_SESSIONS[outcome] !== undefined,
      run: async (handled: HandledEvent) => {
        const ending = ENDS_SESSIONS[handled.outcome];
        if (!ending || !handled.accountId) return;
        await deps.endSessions(handled.accountId, { issuer: deps.googleIssuer, subject: handled.subject }, {
          withGrants: ending.withGrants, ...(ending.beforeEvent && handled.eventTime ? { before: handled.eventTime } : {}),
        });
        if (handled.outcome === 'paused_hijacking') await deps.notifyPaused(handled.accountId);
      },
    },
  );
}
