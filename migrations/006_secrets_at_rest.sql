-- Secrets at rest: signing keys are kept sealed with the master key (TSUNAGI_MASTER_KEY, never in the
-- database). The plain private_jwk column stays only for rows written before this migration; the
-- server's start (and `secrets reencrypt`) seals them and clears it. App secrets and client secrets
-- keep their columns: their values become sealed ("sealed:v1:...") or hashed ("hmac-sha256:...")
-- strings in place, converted by the same startup step (sealing needs the key, which SQL never sees).
ALTER TABLE signing_keys ALTER COLUMN private_jwk DROP NOT NULL;
ALTER TABLE signing_keys ADD COLUMN sealed_private_jwk text;
ALTER TABLE signing_keys ADD CONSTRAINT signing_keys_has_key CHECK (private_jwk IS NOT NULL OR sealed_private_jwk IS NOT NULL);
