import { createHmac, randomInt, timingSafeEqual } from 'node:crypto';

export const CODE_LENGTH = 6;
export const CODE_TTL_SECONDS = 10 * 60;
export const MAX_CODE_ATTEMPTS = 5;

export function generateCode(): string {
  return randomInt(0, 10 ** CODE_LENGTH).toString().padStart(CODE_LENGTH, '0');
}

// A six-digit code has only a million values, so a plain hash of a leaked row is reversed at once.
// The HMAC key (a deployment secret kept apart from the table) and the challenge id bind it.
export function hashCode(pepper: string, challengeId: string, code: string): string {
  return createHmac('sha256', pepper).update(`${challengeId}:${code}`).digest('base64url');
}

export function codeMatches(pepper: string, challengeId: string, code: string, storedHash: string): boolean {
  const a = Buffer.from(hashCode(pepper, challengeId, code));
  const b = Buffer.from(storedHash);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Accepts what people type: spaces and dashes are ignored; anything but six digits is refused. */
export function parseCode(raw: unknown): string | undefined {
  if (typeof raw !== 'string') return undefined;
  // NFKC turns full-width digits (１２３４５６, common from Japanese keyboards) into ASCII ones.
  const digits = raw.normalize('NFKC').replace(/[\s-]/g, '');
  return new RegExp(`^\\d{${CODE_LENGTH}}$`).test(digits) ? digits : undefined;
}
