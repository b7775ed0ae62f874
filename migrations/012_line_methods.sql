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

-- LINE mini-apps, method 3 (incremental export for one client). A person who makes a link code for
-- an app on the account page joins that app's export; stopping shares leaves it (a tombstone).
CREATE TABLE client_export_members (
  client_id   text NOT NULL,
  account_id  uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  joined_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (client_id, account_id)
);
-- One live link code per person and app: a new one replaces (rotates) the old. Only its keyed hash.
CREATE TABLE client_link_codes (
  client_id   text NOT NULL,
  account_id  uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  code_hash   text NOT NULL,
  expires_at  timestamptz NOT NULL,
  PRIMARY KEY (client_id, account_id)
);
-- The change log the export reads past a cursor. No foreign key: a deleted account's entry is its tombstone.
CREATE TABLE client_export_changes (
  seq         bigserial PRIMARY KEY,
  client_id   text NOT NULL,
  account_id  uuid NOT NULL,
  changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX client_export_changes_client ON client_export_changes (client_id, seq);

-- Whatever changes what an export record says (emails, phones, link codes, membership) logs a change
-- for every app the account shares with, so no code path can forget to.
CREATE FUNCTION log_client_export_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  changed_account uuid;
BEGIN
  IF TG_OP = 'DELETE' THEN changed_account := OLD.account_id; ELSE changed_account := NEW.account_id; END IF;
  IF TG_TABLE_NAME IN ('client_export_members', 'client_link_codes') THEN
    INSERT INTO client_export_changes (client_id, account_id)
      VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.client_id ELSE NEW.client_id END, changed_account);
  ELSE
    INSERT INTO client_export_changes (client_id, account_id)
      SELECT m.client_id, changed_account FROM client_export_members m WHERE m.account_id = changed_account;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER account_emails_export AFTER INSERT OR UPDATE OR DELETE ON account_emails FOR EACH ROW EXECUTE FUNCTION log_client_export_change();
CREATE TRIGGER account_phones_export AFTER INSERT OR UPDATE OR DELETE ON account_phones FOR EACH ROW EXECUTE FUNCTION log_client_export_change();
CREATE TRIGGER client_link_codes_export AFTER INSERT OR UPDATE ON client_link_codes FOR EACH ROW EXECUTE FUNCTION log_client_export_change();
CREATE TRIGGER client_export_members_export AFTER INSERT OR DELETE ON client_export_members FOR EACH ROW EXECUTE FUNCTION log_client_export_change();
