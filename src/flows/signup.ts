import type pg from 'pg';
import { EmailAlreadyRegistered, type Account, type AccountStore } from '../accounts/account-store.js';
import type { ProofStore } from '../accounts/proof-store.js';
import { withTransaction } from '../db/database.js';
import type { Proof } from '../accounts/proof.js';
import type { RequestFacts } from './login.js';

export type SignupOutcome =
  | { ok: true; account: Account; proof: Proof; created: boolean }
  | { ok: false; reason: 'no_pending_signup' };

/**
 * The person confirmed "create an account for this address". In one transaction: take the parked
 * proof (once), create the account with the proven address as its verified primary email, audit it.
 * If a concurrent signup registered the same address first, the unique index decides and this
 * person, who proved the address, is signed in to that one account instead of a second one.
 */
export async function confirmSignup(
  deps: { pool: pg.Pool; accounts: AccountStore; proofs: ProofStore; now?: () => Date },
  interactionUid: string,
  facts: RequestFacts,
): Promise<SignupOutcome> {
  const now = deps.now?.() ?? new Date();
  return withTransaction(deps.pool, async (tx) => {
    const parked = await deps.proofs.consume(tx, interactionUid, 'signup', now);
    if (!parked) return { ok: false, reason: 'no_pending_signup' } as const;
    const { proof } = parked;
    if (proof.subject.kind !== 'email') return { ok: false, reason: 'no_pending_signup' } as const;
    const email = { address: proof.subject.address, key: proof.subject.key };
    try {
      const account = await deps.accounts.createAccountWithVerifiedEmail(tx, email);
      await deps.accounts.recordAuditEvent({
        type: 'signup', accountId: account.id, clientId: facts.clientId, ip: facts.ip, userAgent: facts.userAgent,
        data: { method: proof.method },
      }, tx);
      return { ok: true, account, proof, created: true } as const;
    } catch (err) {
      if (!(err instanceof EmailAlreadyRegistered)) throw err;
      const existing = await deps.accounts.findAccountByVerifiedEmail(email, tx);
      if (!existing) throw err;
      return { ok: true, account: existing, proof, created: false } as const;
    }
  });
}

/** The address waiting for the person to confirm creating an account, in this interaction. */
export async function pendingSignup(deps: { proofs: ProofStore; now?: () => Date }, interactionUid: string): Promise<string | undefined> {
  const parked = await deps.proofs.peek(interactionUid, 'signup', deps.now?.() ?? new Date());
  return parked?.proof.subject.kind === 'email' ? parked.proof.subject.address : undefined;
}

export async function cancelSignup(deps: { proofs: ProofStore; now?: () => Date }, interactionUid: string): Promise<void> {
  await deps.proofs.discard(interactionUid, 'signup', deps.now?.() ?? new Date());
}
