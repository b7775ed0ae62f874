-- Google Cross-Account Protection (RISC): Security Event Tokens already handled, by their jti, so a
-- redelivered or replayed SET changes nothing twice. The same shape as apple_notifications (one
-- store serves both: src/accounts/handled-event-store.ts); event_key is the jti, event_time the iat.
CREATE TABLE google_risc_events (LIKE apple_notifications INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
-- LIKE copies no foreign key.
ALTER TABLE google_risc_events ADD FOREIGN KEY (account_id) REFERENCES accounts(id) ON DELETE SET NULL;

-- Sign-in with an upstream identity can be paused by its provider's security events without
-- unlinking it: 'hijacking' (only the person lifts it, from the account page, after signing in
-- another way) or another reason Google gave for disabling the account (lifted by account-enabled).
-- A paused identity is neither a way to sign in nor a proof of owning the account.
ALTER TABLE upstream_identities
  ADD COLUMN sign_in_paused_at     timestamptz,
  ADD COLUMN sign_in_paused_reason text,
  ADD CONSTRAINT upstream_identities_pause_whole CHECK ((sign_in_paused_at IS NULL) = (sign_in_paused_reason IS NULL));
