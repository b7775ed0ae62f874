import type { Account, AccountStore } from '../accounts/account-store.js';
import type { ProofStore } from '../accounts/proof-store.js';
import type { Proof } from '../accounts/proof.js';
import { completeSignIn, type LoginResult, type RequestFacts } from './login.js';
import { holdForRequiredEmail } from './require-email.js';

export type SignInFinish =
  /** The client requires an email the account lacks: the sign-in is held (src/flows/require-email.ts). */
  | { next: 'require_email' }
  /** Signed in: the interaction result, and whether the account was made just now (the passkey offer follows). */
  | { next: 'signed_in'; result: LoginResult; method: Proof['method']; newAccount: boolean };

export interface SignInRequest {
  interactionUid: string;
  facts: RequestFacts;
  /** Looked up only when the account has no verified email. */
  clientRequiresEmail: () => Promise<boolean>;
}

/**
 * The one end of every sign-in path (email code, SMS code, passkey, Google/Apple, link, signup,
 * require-email): first require-email's hold, then the recorded sign-in. What the browser sees next
 * (back to the client, the passkey offer, the require-email page) is the route's to render.
 */
export async function finishSignIn(
  deps: { accounts: AccountStore; proofs: ProofStore; now?: () => Date },
  request: SignInRequest, account: Account, proof: Proof, opts: { newAccount?: boolean } = {},
): Promise<SignInFinish> {
  if (await holdForRequiredEmail(deps, request.interactionUid, account, proof, request.clientRequiresEmail)) return { next: 'require_email' };
  const result = await completeSignIn({ accounts: deps.accounts }, account, proof, request.facts);
  return { next: 'signed_in', result, method: proof.method, newAccount: opts.newAccount === true };
}
