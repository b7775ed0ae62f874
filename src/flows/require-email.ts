import type pg from 'pg';
import { EmailAlreadyRegistered, type Account, type AccountStore } from '../accounts/account-store.js';
import type { EmailAddress } from '../accounts/email-address.js';
import type { ProofStore } from '../accounts/proof-store.js';
import { withTransaction } from '../db/database.js';
import type { Proof } from '../accounts/proof.js';
import type { RequestFacts } from './login.js';

/** How long a held sign-in waits for the person to add and verify the email the client requires. */
export const REQUIRED_EMAIL_HOLD_SECONDS = 15 * 60;

export interface RequireEmailDeps {
  pool: pg.Pool;
  accounts: AccountStore;
  proofs: ProofStore;
  now?: () => Date;
}

/**
 * Require-email, the step after every sign-in path (src/flows/sign-in.ts), in three named steps:
 *
 * 1. hold:     a client that requires an email, and an account without a verified one (a relay
 *              address is never registered, so it never counts): the sign-in is held, parked for
 *              this interaction and not stored in it, so it cannot be resumed around this step;
 * 2. ask:      the person types an address; one someone else verified is refused before any code
 *              (an address never moves between accounts); otherwise a code goes to it (the code step);
 * 3. complete: the code proved the address: in one transaction take the held sign-in (once), add the
 *              address as verified (the unique key decides a race), audit; the held sign-in goes on.
 */
export async function needsRequiredEmail(account: Pick<Account, 'emails'>, clientRequiresEmail: () => Promise<boolean>): Promise<boolean> {
  if (account.emails.some((e) => e.verifiedAt)) return false;
  return clientRequiresEmail();
}

/** Step 1. True when the sign-in is held; the person is then asked for an email. */
export async function holdForRequiredEmail(
  deps: Pick<RequireEmailDeps, 'proofs' | 'now'>, interactionUid: string, account: Account, proof: Proof, clientRequiresEmail: () => Promise<boolean>,
): Promise<boolean> {
  if (!(await needsRequiredEmail(account, clientRequiresEmail))) return false;
  await deps.proofs.discard(interactionUid, 'require_email', deps.now?.() ?? new Date());
  await deps.proofs.park('require_email', { ...proof, interactionUid, subject: { kind: 'account', accountId: account.id } }, REQUIRED_EMAIL_HOLD_SECONDS);
  return true;
}

/** The account whose sign-in is held in this interaction, if any. */
export async function heldSignIn(deps: Pick<RequireEmailDeps, 'proofs' | 'now'>, interactionUid: string): Promise<{ accountId: string; proof: Proof } | undefined> {
  const held = await deps.proofs.peek(interactionUid, 'require_email', deps.now?.() ?? new Date());
  return held?.proof.subject.kind === 'account' ? { accountId: held.proof.subject.accountId, proof: held.proof } : undefined;
}

export type RequiredEmailAsk =
  | { ok: true; accountId: string }
  | { ok: false; reason: 'not_held' | 'taken' };

/** Step 2, before any code: may a code go to `email` for the held sign-in? */
export async function askRequiredEmail(deps: Pick<RequireEmailDeps, 'accounts' | 'proofs' | 'now'>, interactionUid: string, email: EmailAddress): Promise<RequiredEmailAsk> {
  const held = await heldSignIn(deps, interactionUid);
  if (!held) return { ok: false, reason: 'not_held' };
  const owner = await deps.accounts.findAccountByVerifiedEmail(email);
  if (owner && owner.id !== held.accountId) return { ok: false, reason: 'taken' };
  return { ok: true, accountId: held.accountId };
}

export type RequiredEmailOutcome =
  | { ok: true; account: Account; proof: Proof }
  | { ok: false; reason: 'expired' | 'not_an_email' }
  | { ok: false; reason: 'taken'; address: string };

/** Step 3: the code step proved `emailProof`'s address. The held sign-in goes on with its own proof. */
export async function completeRequiredEmail(deps: RequireEmailDeps, interactionUid: string, emailProof: Proof, facts: RequestFacts): Promise<RequiredEmailOutcome> {
  const proven = emailProof.subject;
  if (proven.kind !== 'email') return { ok: false, reason: 'not_an_email' };
  const now = deps.now?.() ?? new Date();
  const outcome = await withTransaction(deps.pool, async (tx) => {
    const held = await deps.proofs.consume(tx, interactionUid, 'require_email', now);
    if (!held || held.proof.subject.kind !== 'account') return { ok: false, reason: 'expired' } as const;
    const accountId = held.proof.subject.accountId;
    if (!(await deps.accounts.lockAccount(tx, accountId))) return { ok: false, reason: 'expired' } as const;
    try {
      await deps.accounts.addVerifiedEmail(tx, accountId, { address: proven.address, key: proven.key });
    } catch (err) {
      if (err instanceof EmailAlreadyRegistered) return { ok: false, reason: 'taken', address: proven.address } as const;
      throw err;
    }
    await deps.accounts.recordAuditEvent({ type: 'email_added', accountId, ...facts, data: { email: proven.address, requiredBy: facts.clientId } }, tx);
    return { ok: true, accountId, proof: held.proof } as const;
  });
  if (!outcome.ok) return outcome;
  const account = await deps.accounts.findAccountById(outcome.accountId);
  return account ? { ok: true, account, proof: outcome.proof } : { ok: false, reason: 'expired' };
}
