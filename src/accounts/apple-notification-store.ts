import type pg from 'pg';
import { HANDLED_EVENT_RETENTION_DAYS, HandledEventStore } from './handled-event-store.js';

/** How long a handled notification is remembered (far longer than a notification may be old when it arrives). */
export const APPLE_NOTIFICATION_RETENTION_DAYS = HANDLED_EVENT_RETENTION_DAYS;

/** Apple server-to-server notifications already handled: the database decides which delivery is the first. */
export class AppleNotificationStore extends HandledEventStore {
  constructor(pool: pg.Pool) {
    super(pool, 'apple_notifications');
  }
}
