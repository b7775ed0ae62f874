-- Passkeys (WebAuthn credentials) and their single-use challenges.

CREATE TABLE webauthn_credentials (
  id             text PRIMARY KEY,            -- credential id, base64url
  account_id     uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  public_key     bytea NOT NULL,              -- COSE public key
  counter        bigint NOT NULL DEFAULT 0,
  transports     text[] NOT NULL DEFAULT '{}',
  aaguid         text,
  device_type    text NOT NULL CHECK (device_type IN ('singleDevice', 'multiDevice')),
  backed_up      boolean NOT NULL DEFAULT false,
  name           text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  last_used_at   timestamptz
);
CREATE INDEX webauthn_credentials_account ON webauthn_credentials (account_id);

-- A challenge is bound to what asked for it: an interaction uid (sign-in) or an account-page
-- session ('account:<session uid>', registration), and for registration to the account.
CREATE TABLE webauthn_challenges (
  id           uuid PRIMARY KEY,
  binding      text NOT NULL,
  purpose      text NOT NULL CHECK (purpose IN ('authenticate', 'register')),
  account_id   uuid REFERENCES accounts(id) ON DELETE CASCADE,
  challenge    text NOT NULL UNIQUE,
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,
  consumed_at  timestamptz,
  CHECK (purpose = 'authenticate' OR account_id IS NOT NULL)
);
CREATE INDEX webauthn_challenges_binding ON webauthn_challenges (binding, purpose, created_at DESC);
CREATE INDEX webauthn_challenges_expires ON webauthn_challenges (expires_at);
