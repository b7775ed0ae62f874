import type { Account, AccountStore } from '../accounts/account-store.js';
import type { EmailAddress } from '../accounts/email-address.js';
import type { ProofStore } from '../accounts/proof-store.js';
import { acrFor } from '../methods/acr.js';
import type { Proof } from '../accounts/proof.js';
import { AccountDisabled } from './account-disabled.js';

/** How long a person has to confirm a signup after proving their email. */
export const SIGNUP_CONFIRMATION_TTL_SECONDS = 15 * 60;

/**
 * Where the sign-in code for a typed address goes: the address stored on the account that has it as
 * a verified email, exactly as the owner proved it, never the string just typed (which may differ
 * in case, and is someone else's to choose). Only when no account has it does the code go to the
 * typed address, to prove that mailbox for a signup.
 */
export async function emailCodeRecipient(deps: { accounts: AccountStore }, typed: EmailAddress): Promise<EmailAddress> {
  const account = await deps.accounts.findAccountByVerifiedEmail(typed);
  const stored = account?.emails.find((e) => e.verifiedAt && e.key === typed.key);
  return stored ? { address: stored.address, key: stored.key } : typed;
}

export type AfterEmailProof =
  | { next: 'sign_in'; account: Account; proof: Proof }
  | { next: 'confirm_signup'; email: string };

/**
 * Login by email code, decided:
 * 1. the proven address is a verified email of an account -> sign that account in;
 * 2. otherwise -> park the proof and ask the person to confirm creating an account (nothing exists yet).
 */
export async function decideAfterEmailProof(deps: { accounts: AccountStore; proofs: ProofStore }, proof: Proof): Promise<AfterEmailProof> {
  if (proof.subject.kind !== 'email') throw new TypeError('an email proof is needed here');
  const account = await deps.accounts.findAccountByVerifiedEmail({ address: proof.subject.address, key: proof.subject.key });
  if (account) return { next: 'sign_in', account, proof };
  await deps.proofs.park('signup', proof, SIGNUP_CONFIRMATION_TTL_SECONDS);
  return { next: 'confirm_signup', email: proof.subject.address };
}

/** Login by SMS code: the proven number must be a verified phone of an account (there is no signup by phone). */
export async function decideAfterPhoneProof(deps: { accounts: AccountStore }, proof: Proof): Promise<Account | undefined> {
  if (proof.subject.kind !== 'phone') throw new TypeError('a phone proof is needed here');
  return deps.accounts.findAccountByVerifiedPhone(proof.subject.phone);
}

/** Login by passkey: the passkey proves its account, which must still exist. */
export async function decideAfterPasskeyProof(deps: { accounts: AccountStore }, proof: Proof): Promise<Account | undefined> {
  return proof.subject.kind === 'account' ? deps.accounts.findAccountById(proof.subject.accountId) : undefined;
}

export type LoginResult = {
  login: { accountId: string; amr: string[]; acr: string; remember: boolean; ts: number };
};

export interface RequestFacts { ip: string; userAgent: string | undefined; clientId: string | undefined }

/** The interaction result that signs `account` in, after recording the sign-in. */
export async function completeSignIn(
  deps: { accounts: AccountStore },
  account: Account,
  proof: Proof,
  facts: RequestFacts,
): Promise<LoginResult> {
  // Every method ends here, so a disabled account is refused here, whatever the method.
  if (account.disabledAt) {
    await deps.accounts.recordAuditEvent({ type: 'sign_in_refused_disabled', accountId: account.id, clientId: facts.clientId, ip: facts.ip, userAgent: facts.userAgent, data: { method: proof.method } });
    throw new AccountDisabled(account.id);
  }
  const loginTs = Math.floor(proof.at.getTime() / 1000);
  const via = proof.subject.kind === 'account' ? proof.subject.via : undefined;
  await deps.accounts.recordAuditEvent({
    type: 'sign_in', accountId: account.id, clientId: facts.clientId, ip: facts.ip, userAgent: facts.userAgent,
    // The session's loginTs and the upstream identities it went through: how a provider's security
    // event later finds the sessions that began with one identity (AccountStore.upstreamSignInTimes).
    data: { method: proof.method, amr: proof.amr, ...(via?.length ? { upstream: via.map(({ issuer, subject }) => ({ issuer, subject })), loginTs } : {}) },
  });
  return {
    login: { accountId: account.id, amr: proof.amr, acr: acrFor(proof.amr), remember: true, ts: loginTs },
  };
}
