-- Each round trip to Google or Apple is bound to the browser that began it (RFC 6749 §10.12,
-- RFC 9700 §4.7.1): a random value in a cookie of that browser, whose sha256 is kept here. The
-- callback consumes the pending login only together with that value, so an authorization URL
-- forwarded to someone else's browser changes nothing. Pending logins from before this migration
-- get '' (never the hash of anything): they fail as "started in another browser", and start again.
ALTER TABLE upstream_logins ADD COLUMN browser_binding_hash text NOT NULL DEFAULT '';
ALTER TABLE upstream_logins ALTER COLUMN browser_binding_hash DROP DEFAULT;

-- Apple's answer is a cross-site form POST, which carries no SameSite=Lax cookie: it is held here
-- under a fresh random reference (only its hash stored) and taken once by the same-site GET the
-- POST redirects to, where the browser's cookie is present and the binding is checked. A held
-- answer decides nothing by itself; it lives two minutes and goes with its pending login.
CREATE TABLE upstream_answers (
  reference_hash  text PRIMARY KEY,
  state_hash      text NOT NULL REFERENCES upstream_logins(state_hash) ON DELETE CASCADE,
  provider        text NOT NULL CHECK (provider IN ('google', 'apple')),
  params          jsonb NOT NULL,
  expires_at      timestamptz NOT NULL
);
CREATE INDEX upstream_answers_expires ON upstream_answers (expires_at);
CREATE INDEX upstream_answers_state ON upstream_answers (state_hash);
