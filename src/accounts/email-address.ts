// Parsing of email addresses typed by people. The key is what uniqueness is decided on:
// the whole address lower-cased (providers differ on local-part case, so we treat it as one).
import type { MaskedValue } from './masked-value.js';

export interface EmailAddress {
  /** As the person typed it, trimmed, with the domain lower-cased. */
  address: string;
  /** Lower-cased, for case-insensitive uniqueness and lookup. */
  key: string;
}

const EMAIL_RE = /^[^\s@<>()[\]\\,;:"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;

export function parseEmailAddress(raw: unknown): EmailAddress | undefined {
  if (typeof raw !== 'string') return undefined;
  const trimmed = raw.trim();
  if (trimmed.length > 254 || !EMAIL_RE.test(trimmed)) return undefined;
  const at = trimmed.lastIndexOf('@');
  const address = `${trimmed.slice(0, at)}@${trimmed.slice(at + 1).toLowerCase()}`;
  return { address, key: address.toLowerCase() };
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
