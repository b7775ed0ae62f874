-- Account lifecycle (issue 15): an operator can disable an account (no sign-in by any method, its
-- sessions and grants ended), and audit events outlive the account they describe.

ALTER TABLE accounts
  ADD COLUMN disabled_at     timestamptz,
  ADD COLUMN disabled_reason text;

-- A deleted account's audit events keep its id (a random uuid that names nobody once the account row,
-- its emails, phones and identities are gone): the trail of what happened to it stays readable until
-- AUDIT_RETENTION_DAYS sweeps it. The delete scrubs the personal details out of those events first.
ALTER TABLE audit_events DROP CONSTRAINT IF EXISTS audit_events_account_id_fkey;

-- The retention sweep and the period export read by time alone.
CREATE INDEX audit_events_created ON audit_events (created_at);
