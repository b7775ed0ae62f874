-- Google and Apple identities linked to accounts, and the upstream sign-ins in flight.

-- An upstream identity is keyed by (issuer, subject), never by email: email, name and the relay flag
-- are attributes refreshed at each sign-in. One Google and one Apple identity per account.
CREATE TABLE upstream_identities (
  id                        uuid PRIMARY KEY,
  account_id                uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  provider                  text NOT NULL CHECK (provider IN ('google', 'apple')),
  issuer                    text NOT NULL,
  subject                   text NOT NULL,
  email                     text,
  email_verified            boolean NOT NULL DEFAULT false,
  is_private_email          boolean NOT NULL DEFAULT false,
  -- Apple's email-disabled / email-enabled notifications flip this for relay addresses.
  email_deliverable         boolean NOT NULL DEFAULT true,
  name                      text,
  -- Apple's refresh token, AES-256-GCM sealed (key in app_secrets), kept to revoke on unlink/deletion.
  refresh_token_ciphertext  bytea,
  created_at                timestamptz NOT NULL DEFAULT now(),
  last_login_at             timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT upstream_identities_issuer_subject UNIQUE (issuer, subject),
  CONSTRAINT upstream_identities_account_provider UNIQUE (account_id, provider)
);

-- A pending authorization at Google or Apple, looked up by the hash of its state when the person
-- comes back. Server-side because Apple answers with a cross-site form POST that carries no
-- SameSite=Lax cookie. Single use and short-lived; bound to the interaction (or account-page
-- session, 'account:<uid>') that started it.
CREATE TABLE upstream_logins (
  state_hash           text PRIMARY KEY,
  interaction_uid      text NOT NULL,
  provider             text NOT NULL CHECK (provider IN ('google', 'apple')),
  nonce                text NOT NULL,
  code_verifier        text NOT NULL,
  redirect_uri         text NOT NULL,
  purpose              text NOT NULL CHECK (purpose IN ('login', 'link_proof', 'account_link')),
  expected_account_id  uuid REFERENCES accounts(id) ON DELETE CASCADE,
  expected_subject     text,
  created_at           timestamptz NOT NULL DEFAULT now(),
  expires_at           timestamptz NOT NULL,
  consumed_at          timestamptz,
  CHECK (purpose = 'login' OR expected_account_id IS NOT NULL)
);
CREATE INDEX upstream_logins_expires ON upstream_logins (expires_at);
