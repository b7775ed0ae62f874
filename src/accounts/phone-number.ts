import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js';
import type { MaskedValue } from './masked-value.js';

/**
 * A phone number as people type it ("090-1234-5678", "+81 90 1234 5678"), normalised to E.164.
 * National formats use the deployment's default region (JP unless configured).
 */
export function parsePhoneNumber(raw: unknown, defaultRegion: string): string | undefined {
  if (typeof raw !== 'string' || raw.length > 40) return undefined;
  const parsed = parsePhoneNumberFromString(raw.normalize('NFKC'), defaultRegion as CountryCode);
  return parsed?.isValid() ? parsed.number : undefined;
}

/** maskPhone with its spoken form ("a phone number ending in 1 2 3 4": digit by digit). */
export function maskedPhone(e164: string): MaskedValue {
  return { shown: maskPhone(e164), spoken: { key: 'masked.phone', vars: { last: e164.slice(-4).split('').join(' ') } } };
}

/** •••-••••-1234: the last four digits, enough to recognise one's own number. */
export function maskPhone(e164: string): string {
  return `•••-••••-${e164.slice(-4)}`;
}

/**
 * A stored number as people write it: the national format ("090-1234-5678") for the deployment's
 * default region, the international one ("+1 202 555 0123") for any other country.
 */
export function formatPhoneNumber(e164: string, defaultRegion: string): string {
  const parsed = parsePhoneNumberFromString(e164);
  if (!parsed) return e164;
  return parsed.country === defaultRegion.toUpperCase() ? parsed.formatNational() : parsed.formatInternational();
}
