import { domainToASCII, domainToUnicode } from 'node:url';
import type { MaskedValue } from './masked-value.js';
// Email addresses typed by people, parsed and normalised once, here, at the edge.
//
// Policy (README, "Security"): the local part (before the @) must be ASCII: letters, digits and
// ! # $ % & ' * + - / = ? ^ _ ` { | } ~ . (RFC 5322 atext and dots; dots anywhere, as some Japanese
// carriers' older addresses have them). An internationalised local part (RFC 6531) is refused with
// a message saying so, because there is no safe way to compare two of them: mailbox providers
// differ on case and normalisation, and any folding Tsunagi applied (lower-casing, NFKC, case
// folding) would map look-alikes onto other people's addresses: U+212A KELVIN SIGN lower-cases to
// "k", full-width letters fold to ASCII, U+0130 lower-cases to "i" plus a combining dot. The domain
// may be internationalised (IDNA): it is stored in its ASCII (A-label, punycode) form, and only when
// it was typed already in its normalised form (no mapping: full-width or compatibility characters
// are refused, not silently folded). Control, format (bidi overrides, zero-width), private-use,
// surrogate and unassigned characters are refused anywhere. The key, on which uniqueness is
// decided, is the whole address lower-cased, which for an ASCII local part is plain ASCII case.

export interface EmailAddress {
  /** The local part as typed (trimmed), @, the domain lower-cased in its ASCII form. */
  address: string;
  /** Lower-cased, for case-insensitive uniqueness and lookup. */
  key: string;
}

/** Why a typed address was refused, so the page can say what to change. */
export type EmailAddressProblem = 'format' | 'characters' | 'non_ascii_local_part';

export type EmailAddressParse = { ok: true; email: EmailAddress } | { ok: false; problem: EmailAddressProblem };

const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$/;
const ASCII_DOMAIN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/;
/** Control, format (bidi, zero-width), surrogate, private-use and unassigned code points. */
const FORBIDDEN_CHARACTERS = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}]/u;
const NON_ASCII = /[^\x20-\x7e]/;

export function checkEmailAddress(raw: unknown): EmailAddressParse {
  if (typeof raw !== 'string') return { ok: false, problem: 'format' };
  const trimmed = raw.trim();
  if (trimmed.length > 254) return { ok: false, problem: 'format' };
  if (FORBIDDEN_CHARACTERS.test(trimmed)) return { ok: false, problem: 'characters' };
  const at = trimmed.lastIndexOf('@');
  if (at <= 0) return { ok: false, problem: 'format' };
  const local = trimmed.slice(0, at);
  if (NON_ASCII.test(local)) return { ok: false, problem: 'non_ascii_local_part' };
  if (!LOCAL_PART.test(local)) return { ok: false, problem: 'format' };
  const domain = asciiDomain(trimmed.slice(at + 1));
  if (!domain) return { ok: false, problem: 'format' };
  const address = `${local}@${domain}`;
  if (address.length > 254) return { ok: false, problem: 'format' };
  return { ok: true, email: { address, key: address.toLowerCase() } };
}

export function parseEmailAddress(raw: unknown): EmailAddress | undefined {
  const parsed = checkEmailAddress(raw);
  return parsed.ok ? parsed.email : undefined;
}

/**
 * The domain's ASCII form, or undefined. ASCII letters are lower-cased; anything else must already be
 * what IDNA would keep: a domain whose conversion changes a character (full-width "ｅ" to "e", the
 * Kelvin sign to "k", "Ü" to "ü") is refused rather than folded onto another domain.
 */
function asciiDomain(typed: string): string | undefined {
  const lowered = typed.replace(/[A-Z]/g, (c) => c.toLowerCase());
  const ascii = domainToASCII(lowered);
  if (!ascii || !ASCII_DOMAIN.test(ascii)) return undefined;
  if (NON_ASCII.test(lowered) ? domainToUnicode(ascii) !== lowered : ascii !== lowered) return undefined;
  return ascii;
}

/** The message key a page shows for a refused address. */
export function emailProblemMessage(problem: EmailAddressProblem): string {
  return problem === 'format' ? 'login.error.invalid_email' : `login.error.email_${problem}`;
}

/** maskEmail with its spoken form ("an email address that starts with t at example.com"). */
export function maskedEmail(address: string): MaskedValue {
  const at = address.lastIndexOf('@');
  return { shown: maskEmail(address), spoken: { key: 'masked.email', vars: { first: address.slice(0, 1), domain: address.slice(at + 1) } } };
}

/** t•••@example.com: enough for a person to recognise their address, not enough to harvest it. */
export function maskEmail(address: string): string {
  const at = address.lastIndexOf('@');
  const local = address.slice(0, at);
  return `${local.slice(0, 1)}•••@${address.slice(at + 1)}`;
}
