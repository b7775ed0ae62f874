-- Admin API clients (src/http/admin-api.ts): the operator registers them with
-- `clients add --admin read|write`, and only those rows may list the admin scopes (`clients lint`
-- reports any other client that does). Rate-limit counters and audit rows need no new table.
ALTER TABLE clients DROP CONSTRAINT IF EXISTS clients_source_check;
ALTER TABLE clients ADD CONSTRAINT clients_source_check CHECK (source IN ('cli', 'dynamic', 'admin'));
