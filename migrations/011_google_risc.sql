-- Google Cross-Account Protection (RISC): Security Event Tokens already handled, by their jti, so a
-- redelivered or replayed SET changes nothing twice. Same shape as apple_notifications (one store
-- serves both: src/accounts/handled-event-store.ts); event_time is the SET's iat.
CREATE TABLE google_risc_events (
  event_key     text PRIMARY KEY,
  type          text NOT NULL,
  subject       text NOT NULL,
  event_time    timestamptz,
  account_id    uuid REFERENCES accounts(id) ON DELETE SET NULL,
  outcome       text NOT NULL,
  received_at   timestamptz NOT NULL DEFAULT now(),
  -- Set once the sessions begun with the identity were ended too; a retry finishes that step.
  completed_at  timestamptz
);
CREATE INDEX google_risc_events_received ON google_risc_events (received_at);

-- Sign-in with an upstream identity can be paused by its provider's security events without
-- unlinking it: 'hijacking' (only the person lifts it, from the account page, after signing in
-- another way) or another reason Google gave for disabling the account (lifted by account-enabled).
-- A paused identity is neither a way to sign in nor a proof of owning the account.
ALTER TABLE upstream_identities
  ADD COLUMN sign_in_paused_at     timestamptz,
  ADD COLUMN sign_in_paused_reason text,
  ADD CONSTRAINT upstream_identities_pause_whole CHECK ((sign_in_paused_at IS NULL) = (sign_in_paused_reason IS NULL));
