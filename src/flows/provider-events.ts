import type pg from 'pg';
import type { HandledEvent, HandledEventStore } from '../accounts/handled-event-store.js';
import { withTransaction } from '../db/database.js';

// The part every provider security event shares (Apple's server-to-server notifications, Google's
// RISC Security Event Tokens): verified upstream, then applied exactly once, whatever the number of
// deliveries, with the slow follow-up (ending sessions) finished by a redelivery if it was cut off.

export interface HandledOnceDeps {
  pool: pg.Pool;
  handled: HandledEventStore;
  now?: () => Date;
}

/** What one event is, for the record: `key` makes two deliveries the same event. */
export interface EventIdentity { key: string; type: string; subject: string; time: Date | undefined }

export interface EventDecision<O extends string> {
  outcome: O;
  accountId: string | undefined;
  /** The change, in the same transaction, after the event was recorded as the first delivery. */
  apply(tx: pg.PoolClient): Promise<void>;
}

export interface EventFollowUp {
  /** Whether this outcome needs work after the commit. */
  needed(outcome: string): boolean;
  /** That work (ending sessions); may run again for a redelivery when it did not complete. */
  run(handled: HandledEvent): Promise<void>;
}

/**
 * In one transaction: decide what the event leads to, record it by its key (the first delivery wins,
 * a duplicate changes nothing), then apply it. After the commit the follow-up runs and the record is
 * marked complete; a duplicate of an event whose follow-up did not complete finishes it.
 */
export async function handleEventOnce<O extends string>(
  deps: HandledOnceDeps, event: EventIdentity, decide: (tx: pg.PoolClient) => Promise<EventDecision<O>>, followUp: EventFollowUp,
): Promise<{ outcome: O | 'duplicate'; accountId?: string }> {
  const now = () => deps.now?.() ?? new Date();
  const applied = await withTransaction(deps.pool, async (tx) => {
    const decision = await decide(tx);
    const first = await deps.handled.recordFirst(tx, {
      eventKey: event.key, type: event.type, subject: event.subject, eventTime: event.time, accountId: decision.accountId, outcome: decision.outcome,
    }, now());
    if (!first) return undefined;
    await decision.apply(tx);
    return decision;
  });

  const handled = await deps.handled.find(event.key);
  if (!applied) {
    if (handled && !handled.completedAt && followUp.needed(handled.outcome)) {
      await followUp.run(handled);
      await deps.handled.markCompleted(event.key, now());
    }
    return { outcome: 'duplicate' };
  }
  if (handled && followUp.needed(applied.outcome)) await followUp.run(handled);
  await deps.handled.markCompleted(event.key, now());
  return applied.accountId ? { outcome: applied.outcome, accountId: applied.accountId } : { outcome: applied.outcome };
}
