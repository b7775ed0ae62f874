import type pg from 'pg';
import { sealAppSecrets } from '../db/app-secrets.js';
import type { MasterKeyring } from '../secrets/master-key.js';
import type { ClientStore } from './client-store.js';
import type { SigningKeyStore } from './keys.js';

export interface SealedCounts { appSecrets: number; signingKeys: number; clientSecrets: number }

/**
 * Every secret Tsunagi keeps in the database, sealed (or, for client secrets, hashed) under the
 * newest master key. At start (`reseal` false) only values still in plain text, from before
 * migration 006, are converted; `secrets reencrypt` (`reseal` true) also moves values sealed with an
 * older key to the newest one, after which the old key can be dropped. Idempotent and safe to run
 * from several processes at once: each row is rewritten only if it still holds what was read.
 */
export async function sealSecretsAtRest(pool: pg.Pool, stores: { keyring: MasterKeyring; keys: SigningKeyStore; clients: ClientStore }, reseal: boolean): Promise<SealedCounts> {
  return {
    appSecrets: await sealAppSecrets(pool, stores.keyring, reseal),
    signingKeys: await stores.keys.sealKeys(pool, reseal),
    clientSecrets: await stores.clients.sealSecrets(pool, reseal),
  };
}
