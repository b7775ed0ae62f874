-- LINE mini-apps, method 2 (OpenID CIBA, poll mode): the approval link Tsunagi sends to the person
-- for one backchannel authentication request. Only a hash of the link's secret is kept, so a
-- database dump cannot approve anything; decided_at makes the link single use.
CREATE TABLE ciba_approvals (
  auth_req_id      text PRIMARY KEY,
  account_id       uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  client_id        text NOT NULL,
  client_name      text NOT NULL,
  binding_message  text NOT NULL,
  scope            text NOT NULL,
  -- 'email' or 'sms': where the link went.
  channel          text NOT NULL,
  link_hash        text NOT NULL UNIQUE,
  created_at       timestamptz NOT NULL,
  expires_at       timestamptz NOT NULL,
  decided_at       timestamptz,
  -- 'approved' or 'refused'
  decision         text
);
CREATE INDEX ciba_approvals_expires ON ciba_approvals (expires_at);
