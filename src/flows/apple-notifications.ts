import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { AccountStore, AuditEventType } from '../accounts/account-store.js';
import type { AppleNotificationStore } from '../accounts/apple-notification-store.js';
import type { UpstreamIdentityStore } from '../accounts/upstream-identity-store.js';
import { claimBoolean, claimString } from '../upstream/oidc-client.js';
import { handleEventOnce } from './provider-events.js';

/**
 * Apple's server-to-server notifications (Sign in with Apple, "notification endpoint"), after the
 * JWS was verified. What Tsunagi does for each, and why:
 *
 * - email-disabled / email-enabled: the person turned forwarding of their Hide My Email relay off or
 *   on. The relay address stays on the identity; only whether mail to it is delivered flips.
 * - consent-revoked: the person stopped using Sign in with Apple with this app. Apple will no longer
 *   vouch for this identity, so it is unlinked; the account's sessions and grants are ended, since
 *   some of them were obtained through Apple.
 * - account-delete: the Apple account is gone: same as consent-revoked.
 *
 * The Tsunagi account itself is never deleted by a notification. When Apple was its last way to sign
 * in, the account is kept (relying parties know it by its `sub`; deleting it silently would orphan
 * their data and is not the person's request to Tsunagi) but nobody can sign in to it any more; the
 * audit event says `lastMethod: true` so an operator can find it, recover it with the person, or
 * delete it under the retention policy.
 *
 * A revocation older than the identity's latest Apple sign-in is superseded (the person signed in with
 * Apple again afterwards, which is consent given again) and changes nothing.
 */
export const APPLE_EVENT_TYPES = ['email-disabled', 'email-enabled', 'consent-revoked', 'account-delete'] as const;
export type AppleEventType = (typeof APPLE_EVENT_TYPES)[number];

export interface AppleNotificationEvent {
  /** A type Tsunagi does not know is still recorded (and acknowledged), never acted on. */
  type: AppleEventType | 'unknown';
  rawType: string;
  subject: string;
  eventTime: Date | undefined;
  email: string | undefined;
  isPrivateEmail: boolean;
}

/**
 * The `events` claim: a JSON string (as Apple sends it; an object is accepted too) with type, sub,
 * event_time (seconds, or milliseconds as some deliveries carry), and email / is_private_email for
 * the email events. undefined when it is not a usable event.
 */
export function parseAppleEvents(claim: unknown): AppleNotificationEvent | undefined {
  let raw: unknown = claim;
  if (typeof claim === 'string') {
    if (claim.length > 8192) return undefined;
    try { raw = JSON.parse(claim); } catch { return undefined; }
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const fields = raw as Record<string, unknown>;
  const rawType = claimString(fields.type);
  const subject = claimString(fields.sub);
  if (!rawType || !subject || rawType.length > 64 || subject.length > 255) return undefined;
  const type = (APPLE_EVENT_TYPES as readonly string[]).includes(rawType) ? (rawType as AppleEventType) : 'unknown';
  return { type, rawType, subject, eventTime: eventTimeOf(fields.event_time), email: claimString(fields.email), isPrivateEmail: claimBoolean(fields.is_private_email) };
}

function eventTimeOf(v: unknown): Date | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d{1,16}$/.test(v) ? Number(v) : NaN;
  if (!Number.isFinite(n) || n <= 0) return undefined;
  return new Date(n > 1e12 ? n : n * 1000);
}

/** The same event signed and delivered again is still the same event. */
export function appleEventKey(event: Pick<AppleNotificationEvent, 'rawType' | 'subject' | 'eventTime'>): string {
  return createHash('sha256').update(`${event.rawType}\0${event.subject}\0${event.eventTime?.getTime() ?? ''}`).digest('hex');
}

export interface AppleNotificationDeps {
  pool: pg.Pool;
  accounts: AccountStore;
  identities: UpstreamIdentityStore;
  notifications: AppleNotificationStore;
  /** The issuer Apple identities are stored under (the configured Apple issuer). */
  appleIssuer: string;
  /** Ends every session and grant of the account (its tokens stop working). Runs after the commit. */
  endSessions: (accountId: string) => Promise<void>;
  now?: () => Date;
}

export type AppleNotificationOutcome =
  | 'email_disabled' | 'email_enabled' | 'unlinked'
  | 'duplicate' | 'unknown_subject' | 'superseded' | 'ignored_type';

/**
 * Handles one verified notification, exactly once (src/flows/provider-events.ts): recorded by its
 * event key, applied and audited in the same transaction; after the commit, a revocation ends the
 * account's sessions (a retry finishes that step if it was cut off).
 */
export async function handleAppleNotification(deps: AppleNotificationDeps, event: AppleNotificationEvent): Promise<{ outcome: AppleNotificationOutcome; accountId?: string }> {
  return handleEventOnce<AppleNotificationOutcome>(
    { pool: deps.pool, handled: deps.notifications, now: deps.now },
    { key: appleEventKey(event), type: event.rawType, subject: event.subject, time: event.eventTime },
    async (tx) => {
      const identity = await deps.identities.findByIssuerSubject(deps.appleIssuer, event.subject, tx);
      const revocation = event.type === 'consent-revoked' || event.type === 'account-delete';
      let outcome: AppleNotificationOutcome;
      if (event.type === 'unknown') outcome = 'ignored_type';
      else if (!identity) outcome = 'unknown_subject';
      else if (revocation && event.eventTime && event.eventTime < identity.lastLoginAt) outcome = 'superseded';
      else outcome = revocation ? 'unlinked' : event.type === 'email-disabled' ? 'email_disabled' : 'email_enabled';

      const apply = async (tx: pg.PoolClient) => {
        if (!identity) return;
        const audit = (type: AuditEventType, data: Record<string, unknown>) => deps.accounts.recordAuditEvent({
          type, accountId: identity.accountId, data: { provider: 'apple', by: 'apple_notification', event: event.rawType, ...data },
        }, tx);
        if (outcome === 'email_disabled' || outcome === 'email_enabled') {
          await deps.identities.setEmailDeliverable(deps.appleIssuer, event.subject, outcome === 'email_enabled', tx);
          await audit(outcome === 'email_enabled' ? 'upstream_email_enabled' : 'upstream_email_disabled', {});
        } else if (outcome === 'unlinked') {
          // Serialised with the account page's own changes to sign-in methods.
          await deps.accounts.lockAccount(tx, identity.accountId);
          await deps.identities.unlink(identity.accountId, identity.id, tx);
          const remaining = await deps.accounts.countSignInMethods(identity.accountId, tx);
          await audit('upstream_unlinked', { identity: identity.id, lastMethod: remaining === 0 });
        } else {
          await audit('upstream_notification_ignored', { reason: outcome });
        }
      };
      return { outcome, accountId: identity?.accountId, apply };
    },
    { needed: (outcome) => outcome === 'unlinked', run: async (handled) => { if (handled.accountId) await deps.endSessions(handled.accountId); } },
  );
}
