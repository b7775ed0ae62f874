// What a sign-in method hands to a flow: who or what was proven, how (RFC 8176 amr), when, and for
// which interaction. A proof is only ever accepted by the interaction it names.

export type MethodName = 'email_otp' | 'sms_otp' | 'passkey' | 'upstream';

export type ProofSubject =
  | { kind: 'email'; address: string; key: string }
  | { kind: 'phone'; phone: string }
  /** `via`: the upstream identities this sign-in went through (to find its sessions again, e.g. Google RISC). */
  | { kind: 'account'; accountId: string; via?: UpstreamIdentityRef[] }
  /** A Google/Apple sign-in not (yet) linked to an account: what it said, waiting for link or signup. */
  | { kind: 'upstream'; identity: ParkedUpstreamIdentity; linkToAccountId?: string };

/** An upstream identity by its key, as a sign-in records which one it went through. */
export interface UpstreamIdentityRef { provider: 'google' | 'apple'; issuer: string; subject: string }

/** What an upstream sign-in said of its identity, after every check. The key is (issuer, subject). */
export interface UpstreamIdentityFacts extends UpstreamIdentityRef {
  email?: string;
  /** The provider's email_verified, as a boolean whatever type it came in. */
  emailVerified: boolean;
  /**
   * Whether Tsunagi may register/match this email as verified. Google: email_verified and (a
   * gmail.com address or a Workspace `hd`). Apple: email_verified and not a private relay.
   */
  emailTrustedForRegistration: boolean;
  /** Apple's Hide My Email relay address (is_private_email, or an @privaterelay.appleid.com address). */
  isPrivateRelay: boolean;
  name?: string;
}

/**
 * An upstream identity as parked between requests of one interaction (JSON). The Apple refresh token
 * is sealed (AES-GCM) rather than kept in clear while it waits.
 */
export interface ParkedUpstreamIdentity extends UpstreamIdentityFacts {
  sealedRefreshToken?: string;
}

export interface Proof {
  interactionUid: string;
  method: MethodName;
  amr: string[];
  subject: ProofSubject;
  at: Date;
}
