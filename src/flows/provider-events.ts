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
 * a duplicate changes nothing), then apply it. After the commit one delivery takes on the follow-up
 * (completed_at marks it taken); when it fails it is released, and a redelivery finishes it. (A
 * process that dies in the middle of the follow-up leaves it taken: the sessions it did not reach
 * live on until they expire; the change itself is committed.)
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

  // Taken on by exactly one delivery; released when it fails, so a redelivery finishes it.
  const runFollowUp = async (handled: HandledEvent) => {
    if (!(await deps.handled.markCompleted(event.key, now()))) return;
    try {
      await followUp.run(handled);
    } catch (err) {
      await deps.handled.releaseFollowUp(event.key);
      throw err;
    }
  };
  const handled = await deps.handled.find(event.key);
  if (!applied) {
    if (handled && !handled.completedAt && followUp.needed(handled.outcome)) await runFollowUp(handled);
    return { outcome: 'duplicate' };
  }
  if (handled && followUp.needed(applied.outcome)) await runFollowUp(handled);
  else await deps.handled.markCompleted(event.key, now());
  return applied.accountId ? { outcome: applied.outcome, accountId: applied.accountId } : { outcome: applied.outcome };
}
