import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import type { GoogleUpstreamConfig } from '../config.js';
import { UpstreamError } from './errors.js';
import { REAL_GOOGLE_ISSUER } from './google.js';
import { CLOCK_SKEW_SECONDS, claimString, parseJsonObject, upstreamErrorFromJose, type OidcUpstreamClient } from './oidc-client.js';

// Google Cross-Account Protection: the receiving end of Google's RISC Security Event Tokens (SET,
// RFC 8417) pushed to Tsunagi (RFC 8935). Discovery is {GOOGLE_RISC_ISSUER}/.well-known/risc-configuration
// (Google's: issuer "https://accounts.google.com/", jwks_uri https://www.googleapis.com/oauth2/v3/certs).
// What a verified event does is src/flows/google-risc.ts.

/**
 * A SET older than this is refused even when its signature holds (an old hijacking report replayed
 * after the person re-enabled Google must not pause it again). Google retries a failed push for a
 * while; handled jtis are remembered far longer than this (HANDLED_EVENT_RETENTION_DAYS).
 */
export const GOOGLE_RISC_MAX_AGE_SECONDS = 3 * 24 * 3600;

const RISC = 'https://schemas.openid.net/secevent/risc/event-type/';
const OAUTH = 'https://schemas.openid.net/secevent/oauth/event-type/';

/** The event types Tsunagi accepts (the `events` claim's member names), by their short names. */
export const GOOGLE_RISC_EVENT_TYPES = {
  [`${RISC}account-disabled`]: 'account-disabled',
  [`${RISC}account-enabled`]: 'account-enabled',
  [`${RISC}account-purged`]: 'account-purged',
  [`${RISC}account-credential-change-required`]: 'account-credential-change-required',
  [`${RISC}sessions-revoked`]: 'sessions-revoked',
  [`${OAUTH}tokens-revoked`]: 'tokens-revoked',
  [`${RISC}verification`]: 'verification',
} as const;
export type GoogleRiscEventType = (typeof GOOGLE_RISC_EVENT_TYPES)[keyof typeof GOOGLE_RISC_EVENT_TYPES];

/** A verified SET, parsed. */
export interface GoogleSecurityEvent {
  type: GoogleRiscEventType;
  /** The event type URI as sent. */
  uri: string;
  jti: string;
  issuedAt: Date;
  /** The Google identity it is about (iss-sub subject; absent for verification). */
  subject: { issuer: string; subject: string } | undefined;
  /** account-disabled: "hijacking", "bulk-account", or absent. */
  reason: string | undefined;
  /** verification: the state the receiver asked Google to echo. */
  state: string | undefined;
}

/** An RFC 8935 §2.4 error: the SET is refused with 400 and this `err`. */
export type SetErrorCode = 'invalid_request' | 'invalid_key' | 'invalid_issuer' | 'invalid_audience' | 'authentication_failed';

export class SetRefused extends Error {
  constructor(readonly err: SetErrorCode, readonly description: string) {
    super(`${err}: ${description}`);
    this.name = 'SetRefused';
  }
}

interface RiscConfiguration { issuer: string; jwksUri: string }

/**
 * Verifies Google's SETs: RS256 with a key of the RISC JWKS (downloaded again once on an unknown kid),
 * iss the issuer the risc-configuration names, aud one of Tsunagi's Google client ids, iat present,
 * not in the future and at most GOOGLE_RISC_MAX_AGE_SECONDS old, a jti, and exactly one event.
 * Throws SetRefused (the transmitter's fault) or UpstreamError timeout/unavailable (Google's keys
 * unreachable: the push is answered 503 and retried).
 */
export class GoogleRiscVerifier {
  private configuration: { value: Promise<RiscConfiguration>; until: number } | undefined;
  private jwks: { uri: string; keys: ReturnType<typeof createRemoteJWKSet> } | undefined;

  constructor(
    private readonly config: GoogleUpstreamConfig,
    /** The Google sign-in client: its deadline-bound requests, and the issuer Google identities are stored under. */
    private readonly google: OidcUpstreamClient,
    private readonly options: { timeoutMs: number; clock?: () => Date; jwksCooldownMs?: number },
  ) {}

  private discover(): Promise<RiscConfiguration> {
    const now = Date.now();
    if (this.configuration && this.configuration.until > now) return this.configuration.value;
    const value = this.readConfiguration();
    this.configuration = { value, until: now + 3600_000 };
    value.catch(() => { if (this.configuration?.value === value) this.configuration = undefined; });
    return value;
  }

  private async readConfiguration(): Promise<RiscConfiguration> {
    const { status, body } = await this.google.request(`${this.config.riscIssuer}/.well-known/risc-configuration`, { method: 'GET' });
    const fail = (detail: string) => new UpstreamError('unavailable', 'google', `risc-configuration ${detail}`);
    if (status !== 200) throw fail(`answered ${status}`);
    const doc = parseJsonObject(body);
    const issuer = doc && claimString(doc.issuer);
    const jwksUri = doc && claimString(doc.jwks_uri);
    // Google writes its RISC issuer with a trailing slash; the configured one has none.
    if (!issuer || withoutSlash(issuer) !== this.config.riscIssuer) throw fail(`names issuer ${String(doc?.issuer)}`);
    if (!jwksUri || !/^https?:\/\//.test(jwksUri)) throw fail('has no usable jwks_uri');
    return { issuer, jwksUri };
  }

  private keySet(uri: string): ReturnType<typeof createRemoteJWKSet> {
    if (!this.jwks || this.jwks.uri !== uri) {
      this.jwks = {
        uri,
        keys: createRemoteJWKSet(new URL(uri), { timeoutDuration: this.options.timeoutMs, cooldownDuration: this.options.jwksCooldownMs ?? 30_000, cacheMaxAge: 600_000 }),
      };
    }
    return this.jwks.keys;
  }

  async verify(set: string): Promise<GoogleSecurityEvent> {
    const configuration = await this.discover();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(set, this.keySet(configuration.jwksUri), {
        algorithms: ['RS256'],
        issuer: [configuration.issuer, withoutSlash(configuration.issuer)],
        audience: this.config.riscAudiences,
        clockTolerance: CLOCK_SKEW_SECONDS,
        maxTokenAge: GOOGLE_RISC_MAX_AGE_SECONDS,
        currentDate: this.options.clock?.() ?? new Date(),
        requiredClaims: ['iss', 'aud', 'iat', 'jti'],
      }));
    } catch (err) {
      throw refusalFromJose(err);
    }
    return parseSecurityEvent(payload, this.google.options.issuer);
  }
}

/** An SET's failed check as RFC 8935 names it; key set trouble stays an UpstreamError (retry later). */
function refusalFromJose(err: unknown): SetRefused | UpstreamError {
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return new SetRefused('authentication_failed', 'the signature does not verify');
  const failure = upstreamErrorFromJose('google', err);
  switch (failure.reason) {
    case 'timeout': case 'unavailable': return failure;
    case 'wrong_issuer': return new SetRefused('invalid_issuer', 'iss is not the RISC issuer');
    case 'wrong_audience': return new SetRefused('invalid_audience', 'aud is not a client of this receiver');
    case 'bad_signature': return new SetRefused('invalid_key', 'not signed with a key of the RISC key set, or with an algorithm other than RS256');
    default: return new SetRefused('invalid_request', failure.reason === 'expired' ? 'iat is too old' : 'not a valid SET (malformed, a claim missing, or iat in the future)');
  }
}

/**
 * The `events` claim: exactly one member, an event type Tsunagi accepts, with an iss-sub subject
 * naming a Google identity (except verification). The subject's issuer is normalised to the one
 * Google identities are stored under (Google's own "accounts.google.com" forms included).
 */
export function parseSecurityEvent(payload: JWTPayload, googleIssuer: string): GoogleSecurityEvent {
  const refuse = (description: string) => new SetRefused('invalid_request', description);
  const jti = claimString(payload.jti);
  if (!jti || jti.length > 256) throw refuse('jti is missing or too long');
  // RFC 8417 §2.2: a SET is told apart from an ID token or access token by its events claim.
  const events = payload.events;
  if (typeof events !== 'object' || events === null || Array.isArray(events)) throw refuse('events is not an object');
  const members = Object.entries(events as Record<string, unknown>);
  if (members.length !== 1) throw refuse('a SET from Google carries exactly one event');
  const [uri, body] = members[0] as [string, unknown];
  const type = (GOOGLE_RISC_EVENT_TYPES as Record<string, GoogleRiscEventType | undefined>)[uri];
  if (!type) throw refuse(`event type not accepted here: ${uri.slice(0, 200)}`);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw refuse('the event is not an object');
  const fields = body as Record<string, unknown>;
  const reason = claimString(fields.reason);
  const state = claimString(fields.state);
  const event = { type, uri, jti, issuedAt: new Date((payload.iat as number) * 1000), reason, state };
  if (type === 'verification') return { ...event, subject: undefined };
  const subject = fields.subject;
  if (typeof subject !== 'object' || subject === null) throw refuse('the event has no subject');
  const { subject_type: subjectType, iss, sub } = subject as Record<string, unknown>;
  const issuer = claimString(iss);
  const sub_ = claimString(sub);
  if (subjectType !== 'iss-sub' || !issuer || !sub_ || sub_.length > 255) throw refuse('the subject is not an iss-sub subject');
  return { ...event, subject: { issuer: sameGoogleIssuer(issuer, googleIssuer) ? googleIssuer : issuer, subject: sub_ } };
}

function withoutSlash(issuer: string): string {
  return issuer.replace(/\/+$/, '');
}

function sameGoogleIssuer(named: string, googleIssuer: string): boolean {
  const n = withoutSlash(named);
  if (n === googleIssuer) return true;
  return googleIssuer === REAL_GOOGLE_ISSUER && n === 'accounts.google.com';
}
