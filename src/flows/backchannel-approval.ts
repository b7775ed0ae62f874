import { approvalLinkHash, type CibaApproval, type CibaApprovalStore, type CibaDecision } from '../accounts/ciba-approval-store.js';
import type { BackchannelResults } from '../oidc/ciba.js';

/** The signed-in person looking at an approval link (from the account page's session). */
export interface ApprovingSession {
  accountId: string;
  /** Epoch seconds of the last sign-in. */
  loginTs: number;
  amr: string[];
}

export type ApprovalStep =
  /** Unknown, expired or already decided: the same answer for each, nothing to act on. */
  | { kind: 'invalid' }
  /** Sign in first: nobody is signed in, or the sign-in is older than the request (reauth). */
  | { kind: 'sign_in'; reauth: boolean }
  /** Signed in, but as another account than the one the link was sent to. */
  | { kind: 'other_account' }
  | { kind: 'ready'; approval: CibaApproval };

export type ApprovalOutcome = { kind: 'decided'; decision: CibaDecision; approval: CibaApproval } | Exclude<ApprovalStep, { kind: 'ready' }>;

/** Link secrets are 32 random bytes in base64url; anything else is not worth a database query. */
export function parseApprovalLinkSecret(raw: unknown): string | undefined {
  return typeof raw === 'string' && /^[A-Za-z0-9_-]{43}$/.test(raw) ? raw : undefined;
}

/**
 * The approval of a backchannel authentication request by the person it was sent to, as steps:
 * 1. the link is known, not expired and not yet used;
 * 2. someone is signed in to Tsunagi in this browser, with their own method, *after* the request was
 *    made (an old session on a shared computer is not enough);
 * 3. that someone is the account the request was sent to;
 * 4. the decision is recorded once (single use), then handed to oidc-provider.
 */
export class BackchannelApproval {
  constructor(private readonly deps: { approvals: CibaApprovalStore; results: BackchannelResults; now?: () => Date }) {}

  private now(): Date { return this.deps.now?.() ?? new Date(); }

  async open(linkSecret: string | undefined, session: ApprovingSession | undefined): Promise<ApprovalStep> {
    const approval = linkSecret ? await this.deps.approvals.findByLinkHash(approvalLinkHash(linkSecret)) : undefined;
    if (!approval || approval.decidedAt || approval.expiresAt <= this.now()) return { kind: 'invalid' };
    if (!session) return { kind: 'sign_in', reauth: false };
    if (session.accountId !== approval.accountId) return { kind: 'other_account' };
    if (session.loginTs < Math.floor(approval.createdAt.getTime() / 1000)) return { kind: 'sign_in', reauth: true };
    return { kind: 'ready', approval };
  }

  async decide(linkSecret: string | undefined, session: ApprovingSession | undefined, decision: CibaDecision): Promise<ApprovalOutcome> {
    const step = await this.open(linkSecret, session);
    if (step.kind !== 'ready' || !linkSecret || !session) return step as Exclude<ApprovalStep, { kind: 'ready' }>;
    const decided = await this.deps.approvals.decide(approvalLinkHash(linkSecret), session.accountId, decision, this.now());
    if (!decided) return { kind: 'invalid' };
    const handed = decision === 'approved'
      ? await this.deps.results.approve(decided.authReqId, { accountId: decided.accountId, scope: decided.scope, amr: session.amr, authTime: session.loginTs })
      : await this.deps.results.refuse(decided.authReqId);
    // The request itself expired (or vanished) in the meantime: the backend already got expired_token.
    return handed ? { kind: 'decided', decision, approval: decided } : { kind: 'invalid' };
  }
}
