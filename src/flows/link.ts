import type { Account } from '../accounts/account-store.js';
import type { UpstreamProviderName } from '../accounts/upstream-identity-store.js';
import type { Locale } from '../i18n/index.js';
import type { ParkedUpstreamIdentity, Proof } from '../accounts/proof.js';
import type { AccountSettings } from './account-settings.js';
import { bindingKey } from './code-step.js';
import type { RequestFacts } from './login.js';
import {
  completeLink, linkFromAccountPage, linkOptionsFor, pausedSignIn, pendingUpstream, type AccountPageLinkOutcome, type LinkOptions, type LinkOutcome,
  type PausedSignIn, type UpstreamDeps,
} from './upstream.js';

/**
 * Linking an upstream identity to an account that already has its email, as named steps (after
 * src/flows/upstream.ts parked the identity with the link offer):
 *
 * 1. offer:    the offered account and its own ways to prove it (linkOffer, linkOfferOptions);
 * 2. prove:    a code to one of its addresses or numbers (the code step), its passkey, or a sign-in
 *              with its other linked provider (startLinkProof; the answer is accepted by
 *              acceptLinkProofAnswer in upstream.ts and comes back through resumeUpstreamReturn);
 * 3. complete: proveAndLink -> completeLink (one transaction; the unique keys decide races), a
 *              notification to the account's primary address, then the sign-in (src/flows/sign-in.ts);
 * or decline:  declineLink, and the person is back at the login page.
 * From the account page: completeAccountPageLink.
 */
export interface LinkDeps extends UpstreamDeps {
  settings: Pick<AccountSettings, 'notify' | 'announce'>;
}

export interface LinkOffer { identity: ParkedUpstreamIdentity; account: Account }

/** Step 1: the link offer waiting in this interaction, with the account it is for. */
export async function linkOffer(deps: Pick<UpstreamDeps, 'accounts' | 'proofs' | 'now'>, interactionUid: string): Promise<LinkOffer | undefined> {
  const waiting = await pendingUpstream(deps, interactionUid, 'upstream_link');
  const account = waiting?.linkToAccountId ? await deps.accounts.findAccountById(waiting.linkToAccountId) : undefined;
  return waiting && account ? { identity: waiting.identity, account } : undefined;
}

/** Step 1, for the screen: the offer and the offered account's own ways to prove it, masked. */
export async function linkOfferOptions(
  deps: Pick<UpstreamDeps, 'accounts' | 'identities' | 'proofs' | 'now'> & { passkeyCount: (accountId: string) => Promise<number> },
  interactionUid: string, available: { sms: boolean; providers: readonly UpstreamProviderName[] },
): Promise<(LinkOffer & { options: LinkOptions }) | undefined> {
  const offer = await linkOffer(deps, interactionUid);
  if (!offer) return undefined;
  return { ...offer, options: await linkOptionsFor(deps, offer.account, available, offer.identity.provider) };
}

export type StartLinkProof =
  | { ok: true; offer: LinkOffer; expectedAccountId: string; expectedSubject: string; loginHint: string | undefined }
  | { ok: false; reason: 'no_such_way' }
  | { ok: false; reason: PausedSignIn };

/**
 * Step 2 through the offered account's other provider: only an identity of that account, of another
 * provider than the one being linked, and not paused. Google gets its `sub` as login_hint, which
 * picks exactly that Google account.
 */
export async function startLinkProof(deps: UpstreamDeps, interactionUid: string, provider: UpstreamProviderName): Promise<StartLinkProof> {
  const offer = await linkOffer(deps, interactionUid);
  if (!offer) return { ok: false, reason: 'no_such_way' };
  const linked = (await deps.identities.listForAccount(offer.account.id)).find((i) => i.provider === provider);
  if (!linked || provider === offer.identity.provider) return { ok: false, reason: 'no_such_way' };
  const paused = pausedSignIn(linked);
  if (paused) return { ok: false, reason: paused };
  return { ok: true, offer, expectedAccountId: offer.account.id, expectedSubject: linked.subject, loginHint: provider === 'google' ? linked.subject : undefined };
}

export type ProveAndLinkOutcome = LinkOutcome | { ok: false; reason: 'no_offer' | 'not_a_proof_of_an_account' };

/**
 * Step 3 after a code or a passkey: the proof (made for this interaction's link, or by a passkey in
 * this interaction) must prove the very account the offer is for; a proof of another account links
 * nothing and leaves the offer waiting. Then the link, and its notification.
 */
export async function proveAndLink(deps: LinkDeps, interactionUid: string, proof: Proof, facts: RequestFacts, locale: Locale): Promise<ProveAndLinkOutcome> {
  const offer = await linkOffer(deps, interactionUid);
  if (!offer) return { ok: false, reason: 'no_offer' };
  if (proof.interactionUid !== interactionUid && proof.interactionUid !== bindingKey({ kind: 'link', interactionUid })) return { ok: false, reason: 'wrong_account' };
  const accountId = await provenAccountId(deps, proof);
  if (accountId === null) return { ok: false, reason: 'not_a_proof_of_an_account' };
  if (accountId !== offer.account.id) return { ok: false, reason: 'wrong_account' };
  const ownership: Proof = { ...proof, interactionUid, subject: { kind: 'account', accountId } };
  return linked(deps, await completeLink(deps, interactionUid, ownership, facts), locale);
}

/** The account a proof is for: a code proves an address or a number (of a verified email or phone), a passkey its account. */
async function provenAccountId(deps: Pick<UpstreamDeps, 'accounts'>, proof: Proof): Promise<string | undefined | null> {
  const { subject } = proof;
  if (subject.kind === 'email') return (await deps.accounts.findAccountByVerifiedEmail({ address: subject.address, key: subject.key }))?.id;
  if (subject.kind === 'phone') return (await deps.accounts.findAccountByVerifiedPhone(subject.phone))?.id;
  if (subject.kind === 'account') return subject.accountId;
  return null;
}

async function linked(deps: LinkDeps, outcome: LinkOutcome, locale: Locale): Promise<LinkOutcome> {
  if (outcome.ok) await deps.settings.notify(outcome.account, 'upstream_linked', locale);
  return outcome;
}

/** Declining the offer: the parked identity is dropped; nothing was created or linked. */
export async function declineLink(deps: Pick<UpstreamDeps, 'proofs' | 'now'>, interactionUid: string): Promise<void> {
  await deps.proofs.discard(interactionUid, 'upstream_link', deps.now?.() ?? new Date());
}

export type UpstreamReturn =
  | { next: 'sign_in'; account: Account; proof: Proof }
  | { next: 'start_again' }
  | { next: 'refused'; reason: Exclude<LinkOutcome, { ok: true }>['reason'] };

/**
 * What a returning upstream answer does (/interaction/<uid>/upstream/continue), the interaction's own
 * browser taking the account the callback parked for it (once):
 * - when a link offer waits in this interaction for that very account, the answer completes the
 *   link: it proved the offered account through its other linked provider, whether the person chose
 *   that provider on the link page or went back and chose it on the login page;
 * - otherwise it is a plain sign-in of that account, and a waiting offer stays as it is. An email
 *   code or a passkey used from the login page never completes a link: only the link page's own
 *   code and passkey steps do (proveAndLink), so a sign-in is never silently turned into a link.
 */
export async function resumeUpstreamReturn(deps: LinkDeps, interactionUid: string, facts: RequestFacts, locale: Locale): Promise<UpstreamReturn> {
  const taken = await deps.proofs.consume(deps.pool, interactionUid, 'upstream_return', deps.now?.() ?? new Date());
  const subject = taken?.proof.subject;
  if (!taken || subject?.kind !== 'account') return { next: 'start_again' };
  const waiting = await pendingUpstream(deps, interactionUid, 'upstream_link');
  if (waiting?.linkToAccountId === subject.accountId) {
    const outcome = await linked(deps, await completeLink(deps, interactionUid, taken.proof, facts), locale);
    return outcome.ok ? { next: 'sign_in', account: outcome.account, proof: outcome.proof } : { next: 'refused', reason: outcome.reason };
  }
  const account = await deps.accounts.findAccountById(subject.accountId);
  return account ? { next: 'sign_in', account, proof: taken.proof } : { next: 'start_again' };
}

/** Linking from the account page: take the parked answer for this session, link it, audit and announce. */
export async function completeAccountPageLink(deps: LinkDeps, binding: string, account: Account, facts: RequestFacts, locale: Locale): Promise<AccountPageLinkOutcome> {
  const outcome = await linkFromAccountPage(deps, binding, account.id);
  if (outcome.ok) await deps.settings.announce(account, 'upstream_linked', { provider: outcome.identity.provider }, facts, locale);
  return outcome;
}
