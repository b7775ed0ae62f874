-- Core schema: accounts, their verified emails and phones, clients, signing keys, OIDC artifacts,
-- one-time codes, interaction proofs, rate-limit counters and the audit log.

CREATE TABLE accounts (
  id          uuid PRIMARY KEY,
  name        text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- An email address belongs to at most one account once verified; case-insensitive.
CREATE TABLE account_emails (
  id           uuid PRIMARY KEY,
  account_id   uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  email        text NOT NULL,
  email_key    text NOT NULL,
  is_primary   boolean NOT NULL DEFAULT false,
  verified_at  timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX account_emails_verified_key ON account_emails (email_key) WHERE verified_at IS NOT NULL;
CREATE UNIQUE INDEX account_emails_one_primary ON account_emails (account_id) WHERE is_primary;
CREATE INDEX account_emails_account ON account_emails (account_id);

-- Phone numbers in E.164; a verified number belongs to at most one account.
CREATE TABLE account_phones (
  id           uuid PRIMARY KEY,
  account_id   uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  phone        text NOT NULL,
  verified_at  timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX account_phones_verified_key ON account_phones (phone) WHERE verified_at IS NOT NULL;
CREATE INDEX account_phones_account ON account_phones (account_id);

CREATE TABLE audit_events (
  id          bigserial PRIMARY KEY,
  account_id  uuid REFERENCES accounts(id) ON DELETE SET NULL,
  type        text NOT NULL,
  client_id   text,
  ip          text,
  user_agent  text,
  data        jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_account ON audit_events (account_id, created_at DESC);
CREATE INDEX audit_events_type ON audit_events (type, created_at DESC);

-- RFC 7591 client metadata (plus Tsunagi's snake_case extensions), as oidc-provider reads it.
CREATE TABLE clients (
  client_id   text PRIMARY KEY,
  metadata    jsonb NOT NULL,
  source      text NOT NULL DEFAULT 'cli' CHECK (source IN ('cli', 'dynamic')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Signing keys. 'next' is published but not used to sign, 'current' signs, 'retired' only verifies
-- until retire_until (the longest lifetime of anything it signed), then it is deleted.
CREATE TABLE signing_keys (
  kid           text PRIMARY KEY,
  alg           text NOT NULL,
  state         text NOT NULL CHECK (state IN ('next', 'current', 'retired')),
  private_jwk   jsonb NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  activated_at  timestamptz,
  retired_at    timestamptz,
  retire_until  timestamptz
);
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (alg) WHERE state = 'current';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (alg) WHERE state = 'next';

-- Secrets the deployment generates once and shares between processes (cookie keys in development,
-- the pairwise salt, the OTP pepper).
CREATE TABLE app_secrets (
  name        text PRIMARY KEY,
  value       text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- oidc-provider artifacts (all models, or only the durable ones when Redis is configured).
CREATE TABLE oidc_payloads (
  model        text NOT NULL,
  id           text NOT NULL,
  payload      jsonb NOT NULL,
  grant_id     text,
  user_code    text,
  uid          text,
  expires_at   timestamptz,
  consumed_at  timestamptz,
  PRIMARY KEY (model, id)
);
CREATE INDEX oidc_payloads_grant ON oidc_payloads (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX oidc_payloads_uid ON oidc_payloads (model, uid) WHERE uid IS NOT NULL;
CREATE INDEX oidc_payloads_user_code ON oidc_payloads (model, user_code) WHERE user_code IS NOT NULL;
CREATE INDEX oidc_payloads_expires ON oidc_payloads (expires_at) WHERE expires_at IS NOT NULL;

-- One-time codes (email now, SMS later): only an HMAC of the code is stored; bound to the
-- interaction that asked for it and to its target (an email address or phone number).
CREATE TABLE otp_challenges (
  id               uuid PRIMARY KEY,
  channel          text NOT NULL CHECK (channel IN ('email', 'sms')),
  purpose          text NOT NULL,
  target           text NOT NULL,
  interaction_uid  text NOT NULL,
  account_id       uuid REFERENCES accounts(id) ON DELETE CASCADE,
  code_hash        text NOT NULL,
  attempts         integer NOT NULL DEFAULT 0,
  created_at       timestamptz NOT NULL DEFAULT now(),
  expires_at       timestamptz NOT NULL,
  consumed_at      timestamptz
);
CREATE INDEX otp_challenges_interaction ON otp_challenges (interaction_uid, created_at DESC);
CREATE INDEX otp_challenges_expires ON otp_challenges (expires_at);

-- A proof a method produced that a later step of the same interaction consumes (for example the
-- verified email a signup confirmation turns into an account). Single use, short-lived.
CREATE TABLE interaction_proofs (
  id               uuid PRIMARY KEY,
  interaction_uid  text NOT NULL,
  purpose          text NOT NULL,
  method           text NOT NULL,
  amr              text[] NOT NULL,
  subject          jsonb NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  expires_at       timestamptz NOT NULL,
  consumed_at      timestamptz
);
CREATE INDEX interaction_proofs_interaction ON interaction_proofs (interaction_uid, purpose, created_at DESC);

-- Fixed-window rate-limit counters (Redis holds them instead when configured).
CREATE TABLE rate_limit_counters (
  key           text NOT NULL,
  window_start  timestamptz NOT NULL,
  count         integer NOT NULL,
  expires_at    timestamptz NOT NULL,
  PRIMARY KEY (key, window_start)
);
CREATE INDEX rate_limit_counters_expires ON rate_limit_counters (expires_at);

-- Consent is looked up per (account, client) across browser sessions.
CREATE INDEX oidc_payloads_grant_owner ON oidc_payloads ((payload->>'accountId'), (payload->>'clientId')) WHERE model = 'Grant';
