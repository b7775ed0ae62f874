import { AccountStore } from '../../src/accounts/account-store.js';
import { ProofStore } from '../../src/accounts/proof-store.js';
import { UpstreamIdentityStore, UpstreamTokenCipher } from '../../src/accounts/upstream-identity-store.js';
import type { Database } from '../../src/db/database.js';
import type { UpstreamDeps } from '../../src/flows/upstream.js';
import { developmentMasterKeyring } from '../../src/secrets/master-key.js';
import { openTestDatabase } from './harness.js';

/** The test database and the stores the upstream flow functions need, as services.ts builds them. */
export async function openUpstreamDeps(): Promise<{ db: Database; deps: UpstreamDeps }> {
  const db = await openTestDatabase();
  const cipher = await UpstreamTokenCipher.fromDatabase(db.pool, developmentMasterKeyring());
  const deps: UpstreamDeps = {
    pool: db.pool, accounts: new AccountStore(db.pool), identities: new UpstreamIdentityStore(db.pool, cipher), proofs: new ProofStore(db.pool), cipher,
  };
  return { db, deps };
}
