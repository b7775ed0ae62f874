-- Apple's server-to-server notifications already handled, so a retried or replayed one changes
-- nothing twice. event_key is sha256(type, sub, event_time) of the notification's `events` claim:
-- the same event signed again by Apple is still the same event.
CREATE TABLE apple_notifications (
  event_key     text PRIMARY KEY,
  type          text NOT NULL,
  subject       text NOT NULL,
  event_time    timestamptz,
  -- The account the identity belonged to (null when no account had it linked).
  account_id    uuid REFERENCES accounts(id) ON DELETE SET NULL,
  outcome       text NOT NULL,
  received_at   timestamptz NOT NULL DEFAULT now(),
  -- Set once the sessions and grants of the account were ended too; a retry finishes that step.
  completed_at  timestamptz
);
CREATE INDEX apple_notifications_received ON apple_notifications (received_at);
