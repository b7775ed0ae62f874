import type pg from 'pg';
import type { Account, AccountStore } from '../accounts/account-store.js';
import { EmailAlreadyRegistered } from '../accounts/account-store.js';
import { maskedEmail, parseEmailAddress } from '../accounts/email-address.js';
import type { MaskedValue } from '../accounts/masked-value.js';
import { maskedPhone } from '../accounts/phone-number.js';
import type { ProofStore } from '../accounts/proof-store.js';
import {
  HIJACKING_PAUSE, IdentityAlreadyLinked, ProviderAlreadyLinkedToAccount, type UpstreamIdentity, type UpstreamIdentityStore, type UpstreamProviderName, type UpstreamTokenCipher,
} from '../accounts/upstream-identity-store.js';
import { withTransaction } from '../db/database.js';
import type { ParkedUpstreamIdentity, Proof, UpstreamIdentityRef } from '../accounts/proof.js';
import type { UpstreamPolicy } from '../oidc/client-metadata.js';
import type { UpstreamIdentityClaims } from '../upstream/identity-claims.js';
import type { RequestFacts } from './login.js';

/** How long a person has to confirm a signup, or to prove the account to link, after an upstream sign-in. */
export const UPSTREAM_DECISION_TTL_SECONDS = 15 * 60;
/** The upstream answer waits this long for the interaction's own browser to pick it up. */
export const UPSTREAM_RETURN_TTL_SECONDS = 120;
/** amr of a sign-in at Google or Apple (RFC 8176 has no value for federation; "fed" is the common one). */
export const FEDERATED_AMR = 'fed';

export interface UpstreamDeps {
  pool: pg.Pool;
  accounts: AccountStore;
  identities: UpstreamIdentityStore;
  proofs: ProofStore;
  cipher: UpstreamTokenCipher;
  now?: () => Date;
}

/** What an upstream sign-in leads to. */
export type AfterUpstreamLogin =
  | { next: 'sign_in'; account: Account; proof: Proof }
  | { next: 'offer_link'; account: Account; identity: ParkedUpstreamIdentity }
  | { next: 'confirm_signup'; identity: ParkedUpstreamIdentity }
  | { next: 'refused'; reason: PausedSignIn | typeof SIGN_IN_ONLY_UNLINKED };

/**
 * An identity not linked to any account, on a client whose upstream_policy is signin_only: the person
 * signs in another way and links it on the account page (views/locales upstream.error.<this>).
 */
export const SIGN_IN_ONLY_UNLINKED = 'signin_only_unlinked';

/**
 * Why a linked identity may not be used right now (views/locales upstream.error.<reason>):
 * 'upstream_paused' — Google reported the account hijacked; the person signs in another way and turns
 * it back on from the account page; 'upstream_disabled' — Google disabled the account; it works again
 * once Google enables it (src/flows/google-risc.ts).
 */
export const PAUSED_SIGN_IN = ['upstream_paused', 'upstream_disabled'] as const;
export type PausedSignIn = (typeof PAUSED_SIGN_IN)[number];

/** undefined when the identity may sign in and prove its account; otherwise why not. */
export function pausedSignIn(identity: Pick<UpstreamIdentity, 'signInPaused'>): PausedSignIn | undefined {
  if (!identity.signInPaused) return undefined;
  return identity.signInPaused.reason === HIJACKING_PAUSE ? 'upstream_paused' : 'upstream_disabled';
}

/**
 * The decision after Google or Apple said who this is, as the short list of steps it is:
 * 1. (issuer, subject) is linked          -> refresh what upstream said, sign that account in;
 * 2. the email is one upstream vouches for (verified, not a relay, trusted per provider rules) and
 *    equals a verified email of an account -> offer to link it; linking needs proof of owning that
 *    account (its own methods), never the email;
 * 3. otherwise                            -> a signup confirmation; nothing exists until confirmed.
 * Steps 2 and 3 park the identity for this interaction only.
 *
 * A client with upstream_policy signin_only (MIXI M) keeps step 1 only, and takes no profile data
 * from upstream (only the refresh token, which account deletion must revoke at Apple); anything
 * unlinked is refused before steps 2 and 3, with nothing parked, offered or written.
 */
export async function decideAfterUpstreamLogin(
  deps: UpstreamDeps, claims: UpstreamIdentityClaims, interactionUid: string, policy: UpstreamPolicy = 'full',
): Promise<AfterUpstreamLogin> {
  const now = deps.now?.() ?? new Date();
  const linked = await deps.identities.findByIssuerSubject(claims.issuer, claims.subject);
  const paused = linked && pausedSignIn(linked);
  if (linked && paused) {
    await deps.accounts.recordAuditEvent({ type: 'upstream_sign_in_refused', accountId: linked.accountId, data: { provider: linked.provider, reason: paused } });
    return { next: 'refused', reason: paused };
  }
  if (linked) {
    await deps.identities.refreshAttributes(linked.id, policy === 'signin_only'
      ? { email: null, emailVerified: linked.emailVerified, isPrivateEmail: linked.isPrivateEmail, refreshToken: claims.refreshToken }
      : {
        email: claims.email ?? null, emailVerified: claims.emailVerified, isPrivateEmail: claims.isPrivateRelay,
        name: claims.name, refreshToken: claims.refreshToken,
      }, now);
    const account = await deps.accounts.findAccountById(linked.accountId);
    if (!account) throw new Error('a linked identity without its account');
    return { next: 'sign_in', account, proof: upstreamProof(interactionUid, account.id, now, [refOf(claims)]) };
  }
  if (policy === 'signin_only') return { next: 'refused', reason: SIGN_IN_ONLY_UNLINKED };

  const identity = park(deps.cipher, claims, interactionUid);
  const email = vouchedEmail(claims);
  const owner = email ? await deps.accounts.findAccountByVerifiedEmail(email) : undefined;
  if (owner) {
    await deps.proofs.discard(interactionUid, 'upstream_link', now);
    await deps.proofs.park('upstream_link', parkedProof(interactionUid, identity, now, owner.id), UPSTREAM_DECISION_TTL_SECONDS);
    return { next: 'offer_link', account: owner, identity };
  }
  await deps.proofs.discard(interactionUid, 'upstream_signup', now);
  await deps.proofs.park('upstream_signup', parkedProof(interactionUid, identity, now), UPSTREAM_DECISION_TTL_SECONDS);
  return { next: 'confirm_signup', identity };
}

/** What Tsunagi expected a link-proof answer to be: the offered account's own linked identity. */
export interface ExpectedLinkProof { accountId: string | null; subject: string | null }

/**
 * Acceptance of a link-proof answer (the person proves the offered account through its other linked
 * provider): the answer must come from exactly that linked identity (same issuer and subject, linked
 * to that very account), and that identity must not be paused. Then what upstream said is refreshed
 * and the account is parked for the interaction's browser to pick up (/upstream/continue).
 */
export async function acceptLinkProofAnswer(
  deps: UpstreamDeps, interactionUid: string, expected: ExpectedLinkProof, claims: UpstreamIdentityClaims,
): Promise<{ ok: true } | { ok: false; reason: 'not_the_linked_account' | PausedSignIn }> {
  const linked = await deps.identities.findByIssuerSubject(claims.issuer, claims.subject);
  if (!linked || !expected.accountId || linked.accountId !== expected.accountId || claims.subject !== expected.subject) {
    return { ok: false, reason: 'not_the_linked_account' };
  }
  const paused = pausedSignIn(linked);
  if (paused) return { ok: false, reason: paused };
  await deps.identities.refreshAttributes(linked.id, {
    email: claims.email ?? null, emailVerified: claims.emailVerified, isPrivateEmail: claims.isPrivateRelay, name: claims.name, refreshToken: claims.refreshToken,
  }, deps.now?.() ?? new Date());
  await parkUpstreamReturn(deps, interactionUid, { kind: 'account', accountId: linked.accountId, via: claims });
  return { ok: true };
}

/** Where the browser goes after an upstream answer was checked (src/http/upstream-routes.ts callback). */
export type AfterUpstreamAnswer =
  /** A signed-in account is parked: the interaction's own browser picks it up at /upstream/continue. */
  | { next: 'continue'; interactionUid: string }
  | { next: 'offer_link'; interactionUid: string }
  | { next: 'confirm_signup'; interactionUid: string }
  /** Linking from the account page: the account-page session picks it up at /account/providers/continue. */
  | { next: 'account_page' }
  | { next: 'refused'; reason: string; interactionUid?: string };

/**
 * A checked answer from Google or Apple, by what the attempt was for:
 * - 'login':        the decision above (sign in / offer link / confirm signup / refused), under the
 *                   signing-in client's upstream_policy;
 * - 'link_proof':   acceptance of a link-proof answer (above);
 * - 'account_link': parked for the account-page session of the account that began it.
 */
export async function takeUpstreamAnswer(
  deps: UpstreamDeps,
  pending: { purpose: 'login' | 'link_proof' | 'account_link'; interactionUid: string; expectedAccountId: string | null; expectedSubject: string | null },
  claims: UpstreamIdentityClaims,
  policy: UpstreamPolicy = 'full',
): Promise<AfterUpstreamAnswer> {
  const uid = pending.interactionUid;
  if (pending.purpose === 'login') {
    const decision = await decideAfterUpstreamLogin(deps, claims, uid, policy);
    if (decision.next === 'refused') return { next: 'refused', reason: decision.reason, interactionUid: uid };
    if (decision.next === 'sign_in') {
      await parkUpstreamReturn(deps, uid, { kind: 'account', accountId: decision.account.id, via: claims });
      return { next: 'continue', interactionUid: uid };
    }
    return { next: decision.next, interactionUid: uid };
  }
  if (pending.purpose === 'link_proof') {
    const accepted = await acceptLinkProofAnswer(deps, uid, { accountId: pending.expectedAccountId, subject: pending.expectedSubject }, claims);
    return accepted.ok ? { next: 'continue', interactionUid: uid } : { next: 'refused', reason: accepted.reason, interactionUid: uid };
  }
  if (!pending.expectedAccountId) return { next: 'refused', reason: 'bad_state' };
  await parkUpstreamReturn(deps, uid, { kind: 'link_to_account', claims, accountId: pending.expectedAccountId });
  return { next: 'account_page' };
}

/** Require-email's first question; it lives in src/flows/require-email.ts with the rest of that step. */
export { needsRequiredEmail } from './require-email.js';

/** The email an upstream identity may be matched or registered on: never a relay, never an unvouched one. */
export function vouchedEmail(identity: Pick<UpstreamIdentityClaims, 'email' | 'emailTrustedForRegistration' | 'isPrivateRelay'>) {
  if (!identity.email || !identity.emailTrustedForRegistration || identity.isPrivateRelay) return undefined;
  return parseEmailAddress(identity.email);
}

/** What the link screen offers: the target account's own ways to sign in, masked. */
export interface LinkOptions {
  emails: Array<{ key: string; masked: MaskedValue }>;
  phones: Array<{ phone: string; masked: MaskedValue }>;
  passkey: boolean;
  upstream: Array<{ provider: UpstreamProviderName; subject: string; loginHint: string }>;
}

export async function linkOptionsFor(
  deps: { accounts: AccountStore; identities: UpstreamIdentityStore; passkeyCount: (accountId: string) => Promise<number> },
  account: Account,
  available: { sms: boolean; providers: readonly UpstreamProviderName[] },
  comingFrom: UpstreamProviderName,
): Promise<LinkOptions> {
  const linked = await deps.identities.listForAccount(account.id);
  return {
    emails: account.emails.filter((e) => e.verifiedAt).map((e) => ({ key: e.key, masked: maskedEmail(e.address) })),
    phones: available.sms ? account.phones.filter((p) => p.verifiedAt).map((p) => ({ phone: p.phone, masked: maskedPhone(p.phone) })) : [],
    passkey: (await deps.passkeyCount(account.id)) > 0,
    // A paused identity (Google reported a problem with it) proves nothing.
    upstream: linked
      .filter((i) => i.provider !== comingFrom && available.providers.includes(i.provider) && !pausedSignIn(i))
      .map((i) => ({ provider: i.provider, subject: i.subject, loginHint: loginHintFor(i) })),
  };
}

/** Google takes its own `sub` as login_hint, which picks exactly the linked Google account. */
export function loginHintFor(identity: Pick<UpstreamIdentity, 'provider' | 'subject' | 'email'>): string {
  return identity.provider === 'google' ? identity.subject : identity.email ?? identity.subject;
}

/**
 * Links an identity inside the caller's transaction. The one place the unique keys' verdicts become
 * outcomes: (issuer, subject) already linked (a double submit, a concurrent link or signup), or the
 * account already has an identity of that provider.
 */
async function linkOrRace(
  deps: Pick<UpstreamDeps, 'identities'>, tx: pg.PoolClient, accountId: string, identity: Parameters<UpstreamIdentityStore['link']>[2], now: Date,
): Promise<{ ok: true; identity: UpstreamIdentity } | { ok: false; reason: 'already_linked' | 'provider_already_linked' }> {
  try {
    return { ok: true, identity: await deps.identities.link(tx, accountId, identity, now) };
  } catch (err) {
    if (err instanceof IdentityAlreadyLinked) return { ok: false, reason: 'already_linked' };
    if (err instanceof ProviderAlreadyLinkedToAccount) return { ok: false, reason: 'provider_already_linked' };
    throw err;
  }
}

export type LinkOutcome =
  | { ok: true; account: Account; proof: Proof; identity: UpstreamIdentity }
  | { ok: false; reason: 'no_pending_link' | 'wrong_account' | 'already_linked' | 'provider_already_linked' };

/**
 * The person proved owning the account the parked identity would be linked to. In one transaction:
 * take the parked link decision (once), check the proof is for this interaction and for that very
 * account, link (the unique keys decide races), audit. The sign-in that follows carries both amr.
 */
export async function completeLink(deps: UpstreamDeps, interactionUid: string, ownership: Proof, facts: RequestFacts): Promise<LinkOutcome> {
  const now = deps.now?.() ?? new Date();
  if (ownership.interactionUid !== interactionUid || ownership.subject.kind !== 'account') return { ok: false, reason: 'wrong_account' };
  const accountId = ownership.subject.accountId;
  const pending = await deps.proofs.peek(interactionUid, 'upstream_link', now);
  const subject = pending?.proof.subject;
  if (!subject || subject.kind !== 'upstream' || !subject.linkToAccountId) return { ok: false, reason: 'no_pending_link' };
  // A proof for another account leaves the link decision waiting (the person may still prove the right one).
  if (subject.linkToAccountId !== accountId) return { ok: false, reason: 'wrong_account' };
  return withTransaction(deps.pool, async (tx) => {
    const taken = await deps.proofs.consume(tx, interactionUid, 'upstream_link', now);
    const parked = taken?.proof.subject;
    if (!parked || parked.kind !== 'upstream' || parked.linkToAccountId !== accountId) return { ok: false, reason: 'no_pending_link' } as const;
    if (!(await deps.accounts.lockAccount(tx, accountId))) return { ok: false, reason: 'wrong_account' } as const;
    const linked = await linkOrRace(deps, tx, accountId, unpark(deps.cipher, parked.identity, interactionUid), now);
    if (!linked.ok) return linked;
    const { identity } = linked;
    await deps.accounts.recordAuditEvent({
      type: 'upstream_linked', accountId, clientId: facts.clientId, ip: facts.ip, userAgent: facts.userAgent,
      data: { provider: identity.provider, proof: ownership.method },
    }, tx);
    const account = await deps.accounts.findAccountById(accountId, tx);
    if (!account) throw new Error('account vanished inside its own transaction');
    const amr = [...new Set([FEDERATED_AMR, ...ownership.amr])];
    const via = [refOf(identity), ...(ownership.subject.kind === 'account' ? ownership.subject.via ?? [] : [])];
    return { ok: true, account, identity, proof: { interactionUid, method: 'upstream', amr, subject: { kind: 'account', accountId, via }, at: now } } as const;
  });
}

export type UpstreamSignupOutcome =
  | { ok: true; account: Account; proof: Proof; identity: UpstreamIdentity }
  | { ok: false; reason: 'no_pending_signup' | 'already_linked' | 'email_taken' };

/**
 * The person confirmed creating an account from the parked upstream identity. In one transaction:
 * take the parked identity (once), create the account (with the vouched email as its verified
 * primary email; a relay or unvouched address is never registered), link the identity, audit.
 * If someone registered the same email meanwhile, nothing is created (the person is sent back to
 * start again, which now leads to the link offer), and never to a second account with that email.
 */
export async function confirmUpstreamSignup(deps: UpstreamDeps, interactionUid: string, facts: RequestFacts): Promise<UpstreamSignupOutcome> {
  const now = deps.now?.() ?? new Date();
  return withTransaction(deps.pool, async (tx) => {
    const taken = await deps.proofs.consume(tx, interactionUid, 'upstream_signup', now);
    const parked = taken?.proof.subject;
    if (!parked || parked.kind !== 'upstream') return { ok: false, reason: 'no_pending_signup' } as const;
    const email = vouchedEmail(parked.identity);
    let account: Account;
    try {
      account = email
        ? await deps.accounts.createAccountWithVerifiedEmail(tx, email, parked.identity.name ?? null)
        : await deps.accounts.createAccount(tx, parked.identity.name ?? null);
    } catch (err) {
      if (err instanceof EmailAlreadyRegistered) return { ok: false, reason: 'email_taken' } as const;
      throw err;
    }
    const linked = await linkOrRace(deps, tx, account.id, unpark(deps.cipher, parked.identity, interactionUid), now);
    if (!linked.ok) {
      // A double submit or a concurrent signup with the same identity: undo the new account.
      await tx.query('DELETE FROM accounts WHERE id = $1', [account.id]);
      return { ok: false, reason: 'already_linked' } as const;
    }
    const { identity } = linked;
    await deps.accounts.recordAuditEvent({
      type: 'signup', accountId: account.id, clientId: facts.clientId, ip: facts.ip, userAgent: facts.userAgent,
      data: { method: 'upstream', provider: identity.provider, emailRegistered: Boolean(email) },
    }, tx);
    return { ok: true, account, identity, proof: upstreamProof(interactionUid, account.id, now, [refOf(identity)]) } as const;
  });
}

export type AccountPageLinkOutcome =
  | { ok: true; identity: UpstreamIdentity }
  | { ok: false; reason: 'not_found' | 'already_linked' | 'provider_already_linked' };

/**
 * Linking from the account page: the upstream answer was parked for this account-page session by the
 * callback; the browser holding that session takes it (once) and it is linked to its own account.
 */
export async function linkFromAccountPage(deps: UpstreamDeps, binding: string, accountId: string): Promise<AccountPageLinkOutcome> {
  const now = deps.now?.() ?? new Date();
  return withTransaction(deps.pool, async (tx) => {
    const taken = await deps.proofs.consume(tx, binding, 'upstream_return', now);
    const parked = taken?.proof.subject;
    if (!parked || parked.kind !== 'upstream' || parked.linkToAccountId !== accountId) return { ok: false, reason: 'not_found' } as const;
    if (!(await deps.accounts.lockAccount(tx, accountId))) return { ok: false, reason: 'not_found' } as const;
    return linkOrRace(deps, tx, accountId, unpark(deps.cipher, parked.identity, binding), now);
  });
}

/** Parks a checked upstream answer for the browser of `binding` (an interaction, or an account-page session) to pick up. */
export async function parkUpstreamReturn(deps: Pick<UpstreamDeps, 'proofs' | 'cipher' | 'now'>, binding: string, answer:
  | { kind: 'account'; accountId: string; via: UpstreamIdentityRef }
  | { kind: 'link_to_account'; claims: UpstreamIdentityClaims; accountId: string }): Promise<void> {
  const now = deps.now?.() ?? new Date();
  await deps.proofs.discard(binding, 'upstream_return', now);
  const proof: Proof = answer.kind === 'account'
    ? upstreamProof(binding, answer.accountId, now, [refOf(answer.via)])
    : parkedProof(binding, park(deps.cipher, answer.claims, binding), now, answer.accountId);
  await deps.proofs.park('upstream_return', proof, UPSTREAM_RETURN_TTL_SECONDS);
}

/** The parked identity waiting for a link or signup decision in this interaction, to show. */
export async function pendingUpstream(deps: Pick<UpstreamDeps, 'proofs' | 'now'>, interactionUid: string, purpose: 'upstream_link' | 'upstream_signup') {
  const stored = await deps.proofs.peek(interactionUid, purpose, deps.now?.() ?? new Date());
  const subject = stored?.proof.subject;
  return subject?.kind === 'upstream' ? subject : undefined;
}

export function upstreamProof(interactionUid: string, accountId: string, at: Date, via: UpstreamIdentityRef[]): Proof {
  return { interactionUid, method: 'upstream', amr: [FEDERATED_AMR], subject: { kind: 'account', accountId, via }, at };
}

/** The key of an upstream identity, as a sign-in records it. */
export function refOf(identity: UpstreamIdentityRef): UpstreamIdentityRef {
  return { provider: identity.provider, issuer: identity.issuer, subject: identity.subject };
}

function parkedProof(interactionUid: string, identity: ParkedUpstreamIdentity, at: Date, linkToAccountId?: string): Proof {
  return {
    interactionUid, method: 'upstream', amr: [FEDERATED_AMR], at,
    subject: { kind: 'upstream', identity, ...(linkToAccountId ? { linkToAccountId } : {}) },
  };
}

/** The claims as they may wait in the database: the refresh token sealed to this interaction. */
export function park(cipher: UpstreamTokenCipher, claims: UpstreamIdentityClaims, interactionUid: string): ParkedUpstreamIdentity {
  return {
    provider: claims.provider, issuer: claims.issuer, subject: claims.subject,
    ...(claims.email ? { email: claims.email } : {}),
    emailVerified: claims.emailVerified, emailTrustedForRegistration: claims.emailTrustedForRegistration, isPrivateRelay: claims.isPrivateRelay,
    ...(claims.name ? { name: claims.name } : {}),
    ...(claims.refreshToken ? { sealedRefreshToken: cipher.seal(claims.refreshToken, `parked:${interactionUid}`).toString('base64url') } : {}),
  };
}

function unpark(cipher: UpstreamTokenCipher, parked: ParkedUpstreamIdentity, interactionUid: string) {
  let refreshToken: string | undefined;
  if (parked.sealedRefreshToken) {
    try {
      refreshToken = cipher.open(Buffer.from(parked.sealedRefreshToken, 'base64url'), `parked:${interactionUid}`);
    } catch {
      refreshToken = undefined; // a token that no longer opens only costs the later revocation
    }
  }
  return {
    provider: parked.provider, issuer: parked.issuer, subject: parked.subject, email: parked.email ?? null,
    emailVerified: parked.emailVerified, isPrivateEmail: parked.isPrivateRelay, name: parked.name ?? null, refreshToken,
  };
}
