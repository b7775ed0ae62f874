import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { isoCBOR } from '@simplewebauthn/server/helpers';

// A software WebAuthn authenticator (ES256, attestation "none") that builds the exact bytes a browser
// and a real authenticator would: clientDataJSON, authenticatorData (rpIdHash, flags, counter, attested
// credential data) and DER ECDSA signatures over authenticatorData || SHA-256(clientDataJSON).

const FLAG = { UP: 0x01, UV: 0x04, BE: 0x08, BS: 0x10, AT: 0x40 } as const;

export interface AuthenticatorOptions {
  /** Backup eligible and backed up: a synced passkey (amr swk). Default: a device-bound key (hwk). */
  synced?: boolean;
  userVerified?: boolean;
  /** The signature counter before the first use; 0 means the authenticator keeps no counter. */
  counter?: number;
  /** Counts up on every assertion (true) or stays put (false, as many synced passkeys do). */
  counting?: boolean;
}

/** What a ceremony may be told to get wrong, the way a phishing page or a broken client would. */
export interface CeremonyOverrides {
  origin?: string;
  rpId?: string;
  challenge?: string;
  counter?: number;
  userPresent?: boolean;
  type?: string;
}

const b64u = (b: Uint8Array) => Buffer.from(b).toString('base64url');
const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest();

export class SoftwareAuthenticator {
  readonly credentialId = randomBytes(32);
  private readonly privateKey: KeyObject;
  private readonly publicKey: KeyObject;
  private userHandle: string | undefined;
  counter: number;

  constructor(readonly rpId: string, readonly origin: string, private readonly options: AuthenticatorOptions = {}) {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.privateKey = pair.privateKey;
    this.publicKey = pair.publicKey;
    this.counter = options.counter ?? 0;
  }

  get id(): string {
    return b64u(this.credentialId);
  }

  /** navigator.credentials.create() as @simplewebauthn/browser would return it. */
  register(options: PublicKeyCredentialCreationOptionsJSON, o: CeremonyOverrides = {}): RegistrationResponseJSON {
    this.userHandle = options.user.id;
    const clientDataJSON = this.clientData(o.type ?? 'webauthn.create', o.challenge ?? options.challenge, o.origin);
    const credIdLength = Buffer.alloc(2);
    credIdLength.writeUInt16BE(this.credentialId.length);
    const authData = Buffer.concat([
      this.authDataHead(o, FLAG.AT, o.counter ?? this.counter),
      Buffer.alloc(16), // AAGUID: none
      credIdLength,
      this.credentialId,
      this.cosePublicKey(),
    ]);
    const attestationObject = isoCBOR.encode(new Map<string, unknown>([['fmt', 'none'], ['attStmt', new Map()], ['authData', new Uint8Array(authData)]]) as never);
    return {
      id: this.id, rawId: this.id, type: 'public-key', clientExtensionResults: {}, authenticatorAttachment: 'platform',
      response: { clientDataJSON: b64u(clientDataJSON), attestationObject: b64u(attestationObject), transports: ['internal'] },
    };
  }

  /** navigator.credentials.get() for a discoverable credential: signs and returns the user handle. */
  authenticate(options: PublicKeyCredentialRequestOptionsJSON, o: CeremonyOverrides = {}): AuthenticationResponseJSON {
    if (o.counter === undefined && this.options.counting !== false) this.counter += 1;
    const counter = o.counter ?? this.counter;
    const clientDataJSON = this.clientData(o.type ?? 'webauthn.get', o.challenge ?? options.challenge, o.origin);
    const authData = this.authDataHead(o, 0, counter);
    const signature = sign('sha256', Buffer.concat([authData, sha256(clientDataJSON)]), this.privateKey);
    return {
      id: this.id, rawId: this.id, type: 'public-key', clientExtensionResults: {}, authenticatorAttachment: 'platform',
      response: {
        clientDataJSON: b64u(clientDataJSON), authenticatorData: b64u(authData), signature: b64u(signature),
        ...(this.userHandle ? { userHandle: this.userHandle } : {}),
      },
    };
  }

  private clientData(type: string, challenge: string, origin = this.origin): Buffer {
    return Buffer.from(JSON.stringify({ type, challenge, origin, crossOrigin: false }));
  }

  private authDataHead(o: CeremonyOverrides, extraFlags: number, counter: number): Buffer {
    let flags = extraFlags;
    if (o.userPresent !== false) flags |= FLAG.UP;
    if (this.options.userVerified !== false) flags |= FLAG.UV;
    if (this.options.synced) flags |= FLAG.BE | FLAG.BS;
    const counterBytes = Buffer.alloc(4);
    counterBytes.writeUInt32BE(counter);
    return Buffer.concat([sha256(o.rpId ?? this.rpId), Buffer.from([flags]), counterBytes]);
  }

  private cosePublicKey(): Uint8Array {
    const jwk = this.publicKey.export({ format: 'jwk' });
    const coordinate = (v: string | undefined) => new Uint8Array(Buffer.from(v ?? '', 'base64url'));
    // COSE_Key: kty EC2 (2), alg ES256 (-7), crv P-256 (1), x, y.
    return isoCBOR.encode(new Map<number, number | Uint8Array>([[1, 2], [3, -7], [-1, 1], [-2, coordinate(jwk.x)], [-3, coordinate(jwk.y)]]) as never);
  }
}

/** A response with one byte of its signature flipped. */
export function withTamperedSignature(response: AuthenticationResponseJSON): AuthenticationResponseJSON {
  const sig = Buffer.from(response.response.signature, 'base64url');
  const i = sig.length - 5;
  sig[i] = (sig[i] as number) ^ 0x01;
  return { ...response, response: { ...response.response, signature: sig.toString('base64url') } };
}
