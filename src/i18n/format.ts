import { translator, type Locale } from './index.js';

/**
 * The time zone times are shown in. Nothing records a person's own zone yet, so the language
 * decides: Japanese readers see Japan time, everyone else UTC (always named next to the time).
 */
export function displayTimeZone(locale: Locale): string {
  return locale === 'ja' ? 'Asia/Tokyo' : 'UTC';
}

/** "29 Nov 2026, 18:44 UTC" / "2026/11/30 3:44 JST". */
export function formatDateTime(at: Date, locale: Locale): string {
  return new Intl.DateTimeFormat(locale === 'ja' ? 'ja-JP' : 'en-GB', {
    timeZone: displayTimeZone(locale), dateStyle: 'medium', timeStyle: 'short',
  }).format(at) + ' ' + zoneName(locale);
}

/** "29 Nov 2026" / "2026/11/30", the day in the reader's zone. */
export function formatDate(at: Date, locale: Locale): string {
  return new Intl.DateTimeFormat(locale === 'ja' ? 'ja-JP' : 'en-GB', { timeZone: displayTimeZone(locale), dateStyle: 'medium' }).format(at);
}

function zoneName(locale: Locale): string {
  return locale === 'ja' ? 'JST' : 'UTC';
}

/** "Email address, Name and Phone number" in the reader's language. */
export function formatList(items: string[], locale: Locale): string {
  return new Intl.ListFormat(locale === 'ja' ? 'ja-JP' : 'en-GB', { style: 'long', type: 'conjunction' }).format(items);
}

/** Scopes with words on the account page (views/locales: account.scope.*). */
const NAMED_SCOPES = ['email', 'profile', 'phone', 'offline_access'] as const;
type NamedScope = (typeof NAMED_SCOPES)[number];
const isNamedScope = (scope: string): scope is NamedScope => (NAMED_SCOPES as readonly string[]).includes(scope);

/**
 * What an application may see, in words ("Email address, Name and Phone number"), for a grant's
 * space-separated scopes; a scope without words stays as it is, and openid alone is "Sign-in only".
 */
export function describeGrantedScopes(scope: string, locale: Locale): string {
  const t = translator(locale);
  const named = scope.split(' ').filter((s) => s && s !== 'openid').map((s) => (isNamedScope(s) ? t(`account.scope.${s}`) : s));
  return named.length ? formatList(named, locale) : t('account.scope.openid');
}
