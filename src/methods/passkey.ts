import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { decodeAttestationObject, parseAuthenticatorData } from '@simplewebauthn/server/helpers';
import type { Account } from '../accounts/account-store.js';
import {
  CredentialAlreadyRegistered,
  type ChallengeConsumption,
  type Passkey,
  type PasskeyStore,
  type WebAuthnPurpose,
} from '../accounts/passkey-store.js';
import type { Proof } from '../accounts/proof.js';

/** How long a ceremony may take: its challenge expires after this. */
export const PASSKEY_CHALLENGE_TTL_SECONDS = 5 * 60;
export const PASSKEY_NAME_MAX_LENGTH = 64;

/** EdDSA, ES256, RS256: what authenticators make and every Node verifies. */
const ALGORITHMS = [-8, -7, -257];

export type PasskeyFailure =
  | Exclude<ChallengeConsumption, { ok: true }>['reason']
  | 'invalid_response'
  | 'wrong_origin'
  | 'wrong_rp_id'
  | 'user_not_present'
  | 'unknown_credential'
  | 'counter_regressed'
  | 'bad_signature'
  | 'already_registered';

export type PasskeyAuthentication = { ok: true; proof: Proof; passkey: Passkey } | { ok: false; reason: PasskeyFailure };
export type PasskeyRegistration = { ok: true; passkey: Passkey } | { ok: false; reason: PasskeyFailure };

export interface PasskeyDeps {
  store: PasskeyStore;
  /** The relying party id (a domain) credentials are scoped to. */
  rpId: string;
  /** Shown by the authenticator when a passkey is made. */
  rpName: string;
  /** Origins ceremonies may come from (clientDataJSON.origin). */
  origins: string[];
  now?: () => Date;
}

/**
 * Passkeys (WebAuthn). Sign-in is discoverable: the browser offers every passkey for this RP and the
 * credential names the account, so no email is typed first. Every ceremony's challenge is single
 * use, expires, and belongs to what asked for it (an interaction, or the account page of one account).
 * A passkey is phishing-resistant: amr `hwk` for a device-bound key, `swk` for a synced (backed-up) one.
 */
export class PasskeyMethod {
  private readonly now: () => Date;

  constructor(private readonly deps: PasskeyDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  async authenticationOptions(binding: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
    const options = await generateAuthenticationOptions({
      rpID: this.deps.rpId,
      allowCredentials: [],
      userVerification: 'preferred',
      timeout: PASSKEY_CHALLENGE_TTL_SECONDS * 1000,
    });
    await this.saveChallenge(options.challenge, binding, 'authenticate', null);
    return options;
  }

  async verifyAuthentication(binding: string, response: AuthenticationResponseJSON): Promise<PasskeyAuthentication> {
    const now = this.now();
    const clientData = decodeClientData(response.response.clientDataJSON, 'webauthn.get');
    if (!clientData) return { ok: false, reason: 'invalid_response' };
    // The challenge goes first, whatever follows: a response is looked at once.
    const taken = await this.deps.store.consumeChallenge({ challenge: clientData.challenge, binding, purpose: 'authenticate', accountId: null, now });
    if (!taken.ok) return taken;
    if (!this.deps.origins.includes(clientData.origin)) return { ok: false, reason: 'wrong_origin' };

    const authData = safely(() => parseAuthenticatorData(base64url(response.response.authenticatorData)));
    if (!authData) return { ok: false, reason: 'invalid_response' };
    if (!this.isOurRpIdHash(authData.rpIdHash)) return { ok: false, reason: 'wrong_rp_id' };
    if (!authData.flags.up) return { ok: false, reason: 'user_not_present' };

    const passkey = await this.deps.store.findByCredentialId(response.id);
    if (!passkey) return { ok: false, reason: 'unknown_credential' };
    const { userHandle } = response.response;
    if (userHandle && userHandle !== Buffer.from(webauthnUserId(passkey.accountId)).toString('base64url')) return { ok: false, reason: 'unknown_credential' };
    if (counterRegressed(authData.counter, passkey.counter)) return { ok: false, reason: 'counter_regressed' };

    let verification;
    try {
      verification = await verifyAuthenticationResponse({
        response,
        expectedChallenge: clientData.challenge,
        expectedOrigin: this.deps.origins,
        expectedRPID: this.deps.rpId,
        credential: { id: passkey.id, publicKey: passkey.publicKey, counter: passkey.counter, transports: passkey.transports },
        requireUserVerification: false,
      });
    } catch {
      return { ok: false, reason: 'invalid_response' };
    }
    if (!verification.verified) return { ok: false, reason: 'bad_signature' };
    const info = verification.authenticationInfo;
    // Conditional in SQL: of two racing uses of one counter value, one loses here.
    if (!(await this.deps.store.recordUse(passkey.id, { counter: info.newCounter, backedUp: info.credentialBackedUp, at: now }))) {
      return { ok: false, reason: 'counter_regressed' };
    }
    const synced = info.credentialDeviceType === 'multiDevice' || info.credentialBackedUp;
    return {
      ok: true,
      passkey: { ...passkey, counter: info.newCounter, backedUp: info.credentialBackedUp, lastUsedAt: now },
      proof: { interactionUid: binding, method: 'passkey', amr: [synced ? 'swk' : 'hwk'], subject: { kind: 'account', accountId: passkey.accountId }, at: now },
    };
  }

  async registrationOptions(account: Account, binding: string): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const userName = userNameOf(account);
    const existing = await this.deps.store.descriptorsForAccount(account.id);
    const options = await generateRegistrationOptions({
      rpName: this.deps.rpName,
      rpID: this.deps.rpId,
      userID: webauthnUserId(account.id),
      userName,
      userDisplayName: account.name ?? userName,
      timeout: PASSKEY_CHALLENGE_TTL_SECONDS * 1000,
      attestationType: 'none',
      excludeCredentials: existing,
      authenticatorSelection: { residentKey: 'required', requireResidentKey: true, userVerification: 'preferred' },
      supportedAlgorithmIDs: ALGORITHMS,
    });
    await this.saveChallenge(options.challenge, binding, 'register', account.id);
    return options;
  }

  async verifyRegistration(account: Account, binding: string, response: RegistrationResponseJSON, name: string): Promise<PasskeyRegistration> {
    const now = this.now();
    const clientData = decodeClientData(response.response.clientDataJSON, 'webauthn.create');
    if (!clientData) return { ok: false, reason: 'invalid_response' };
    const taken = await this.deps.store.consumeChallenge({ challenge: clientData.challenge, binding, purpose: 'register', accountId: account.id, now });
    if (!taken.ok) return taken;
    if (!this.deps.origins.includes(clientData.origin)) return { ok: false, reason: 'wrong_origin' };

    const authData = safely(() => parseAuthenticatorData(decodeAttestationObject(base64url(response.response.attestationObject)).get('authData')));
    if (!authData) return { ok: false, reason: 'invalid_response' };
    if (!this.isOurRpIdHash(authData.rpIdHash)) return { ok: false, reason: 'wrong_rp_id' };
    if (!authData.flags.up) return { ok: false, reason: 'user_not_present' };

    let verification;
    try {
      verification = await verifyRegistrationResponse({
        response,
        expectedChallenge: clientData.challenge,
        expectedOrigin: this.deps.origins,
        expectedRPID: this.deps.rpId,
        requireUserVerification: false,
        supportedAlgorithmIDs: ALGORITHMS,
      });
    } catch {
      return { ok: false, reason: 'invalid_response' };
    }
    if (!verification.verified) return { ok: false, reason: 'bad_signature' };
    const info = verification.registrationInfo;
    try {
      const passkey = await this.deps.store.create({
        id: info.credential.id,
        accountId: account.id,
        publicKey: info.credential.publicKey,
        counter: info.credential.counter,
        transports: (info.credential.transports ?? []).filter((t) => typeof t === 'string').slice(0, 8),
        aaguid: info.aaguid,
        deviceType: info.credentialDeviceType,
        backedUp: info.credentialBackedUp,
        name,
      });
      return { ok: true, passkey };
    } catch (err) {
      if (err instanceof CredentialAlreadyRegistered) return { ok: false, reason: 'already_registered' };
      throw err;
    }
  }

  private async saveChallenge(challenge: string, binding: string, purpose: WebAuthnPurpose, accountId: string | null): Promise<void> {
    const expiresAt = new Date(this.now().getTime() + PASSKEY_CHALLENGE_TTL_SECONDS * 1000);
    await this.deps.store.createChallenge({ id: randomUUID(), challenge, binding, purpose, accountId, expiresAt });
  }

  private isOurRpIdHash(rpIdHash: Uint8Array): boolean {
    const ours = createHash('sha256').update(this.deps.rpId).digest();
    return rpIdHash.length === ours.length && timingSafeEqual(rpIdHash, ours);
  }
}

/**
 * The WebAuthn user handle of an account: its uuid's 16 bytes. Stable (every passkey of an account
 * carries the same handle, so authenticators replace rather than pile up), random, and no personal data.
 */
export function webauthnUserId(accountId: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.from(accountId.replace(/-/g, ''), 'hex'));
}

function userNameOf(account: Account): string {
  const email = account.emails.find((e) => e.isPrimary && e.verifiedAt) ?? account.emails.find((e) => e.verifiedAt);
  return email?.address ?? account.phones.find((p) => p.verifiedAt)?.phone ?? account.id;
}

/** Both 0 means the authenticator keeps no counter; otherwise it must have moved forward. */
function counterRegressed(presented: number, stored: number): boolean {
  return (presented > 0 || stored > 0) && presented <= stored;
}

function decodeClientData(encoded: string, type: 'webauthn.get' | 'webauthn.create'): { challenge: string; origin: string } | undefined {
  const parsed = safely(() => JSON.parse(Buffer.from(base64url(encoded)).toString('utf8')) as unknown);
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { type: t, challenge, origin } = parsed as Record<string, unknown>;
  if (t !== type || typeof challenge !== 'string' || typeof origin !== 'string' || !challenge) return undefined;
  return { challenge, origin };
}

function base64url(s: string): Uint8Array<ArrayBuffer> {
  if (!/^[\w-]*$/.test(s)) throw new TypeError('not base64url');
  return new Uint8Array(Buffer.from(s, 'base64url'));
}

function safely<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}

// Parsing at the edge: the JSON a browser posts, checked for shape before anything looks inside.

const B64URL = /^[\w-]+$/;
const isB64 = (v: unknown, max = 16_384): v is string => typeof v === 'string' && v.length <= max && B64URL.test(v);
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const ATTACHMENTS = ['platform', 'cross-platform'];

function credentialBase(value: unknown): { id: string; response: Record<string, unknown>; authenticatorAttachment?: 'platform' | 'cross-platform' } | undefined {
  if (!isRecord(value) || value.type !== 'public-key' || !isB64(value.id, 1024) || value.rawId !== value.id || !isRecord(value.response)) return undefined;
  const attachment = ATTACHMENTS.includes(value.authenticatorAttachment as string) ? (value.authenticatorAttachment as 'platform' | 'cross-platform') : undefined;
  return { id: value.id, response: value.response, ...(attachment ? { authenticatorAttachment: attachment } : {}) };
}

export function parseAuthenticationResponse(value: unknown): AuthenticationResponseJSON | undefined {
  const base = credentialBase(value);
  if (!base) return undefined;
  const r = base.response;
  if (!isB64(r.clientDataJSON) || !isB64(r.authenticatorData) || !isB64(r.signature, 2048)) return undefined;
  if (r.userHandle !== undefined && r.userHandle !== null && !isB64(r.userHandle, 256)) return undefined;
  return {
    id: base.id, rawId: base.id, type: 'public-key', clientExtensionResults: {},
    ...(base.authenticatorAttachment ? { authenticatorAttachment: base.authenticatorAttachment } : {}),
    response: {
      clientDataJSON: r.clientDataJSON, authenticatorData: r.authenticatorData, signature: r.signature,
      ...(typeof r.userHandle === 'string' ? { userHandle: r.userHandle } : {}),
    },
  };
}

export function parseRegistrationResponse(value: unknown): RegistrationResponseJSON | undefined {
  const base = credentialBase(value);
  if (!base) return undefined;
  const r = base.response;
  if (!isB64(r.clientDataJSON) || !isB64(r.attestationObject, 65_536)) return undefined;
  const transports = Array.isArray(r.transports) ? r.transports.filter((t): t is string => typeof t === 'string' && /^[a-z-]{1,20}$/.test(t)) : [];
  return {
    id: base.id, rawId: base.id, type: 'public-key', clientExtensionResults: {},
    ...(base.authenticatorAttachment ? { authenticatorAttachment: base.authenticatorAttachment } : {}),
    response: { clientDataJSON: r.clientDataJSON, attestationObject: r.attestationObject, transports: transports as RegistrationResponseJSON['response']['transports'] },
  };
}

/** A person's name for a passkey: trimmed, one line, at most 64 characters; undefined when blank. */
export function parsePasskeyName(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  // eslint-disable-next-line no-control-regex
  const name = value.replace(/[\u0000-\u001f\u007f]+/g, ' ').replace(/\s+/g, ' ').trim();
  return name ? [...name].slice(0, PASSKEY_NAME_MAX_LENGTH).join('') : undefined;
}
