import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const LOCALES = ['en', 'ja'] as const;
export type Locale = (typeof LOCALES)[number];
export const DEFAULT_LOCALE: Locale = 'en';

type Catalogue = Record<string, string>;
const LOCALES_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../views/locales');

const catalogues: Record<Locale, Catalogue> = Object.fromEntries(
  LOCALES.map((l) => [l, JSON.parse(fs.readFileSync(path.join(LOCALES_DIR, `${l}.json`), 'utf8')) as Catalogue]),
) as Record<Locale, Catalogue>;

export type Translate = (key: string, vars?: Record<string, string | number>) => string;

/**
 * A message may have plural forms as `<key>.<category>` (Intl.PluralRules: "one", "other", ...),
 * chosen by its first numeric variable: "1 minute", "2 minutes". Japanese has no plural, so its
 * catalogue has only the base key, which is also every language's fallback.
 */
function pluralForm(locale: Locale, key: string, vars: Record<string, string | number> | undefined): string | undefined {
  const count = vars ? Object.values(vars).find((v): v is number => typeof v === 'number') : undefined;
  if (count === undefined) return undefined;
  const category = new Intl.PluralRules(locale).select(count);
  return catalogues[locale][`${key}.${category}`];
}

export function translator(locale: Locale): Translate {
  return (key, vars) => {
    const template = pluralForm(locale, key, vars) ?? catalogues[locale][key] ?? catalogues[DEFAULT_LOCALE][key];
    if (template === undefined) throw new Error(`missing message "${key}"`);
    return template.replace(/\{(\w+)\}/g, (m, name: string) => (vars && name in vars ? String(vars[name]) : m));
  };
}

export function isLocale(s: string | undefined): s is Locale {
  return s !== undefined && (LOCALES as readonly string[]).includes(s);
}

/** ui_locales (space-separated, in order of preference), then the cookie, then Accept-Language. */
export function negotiateLocale(input: { uiLocales?: string | undefined; cookie?: string | undefined; acceptLanguage?: string | undefined }): Locale {
  for (const tag of (input.uiLocales ?? '').split(/\s+/)) {
    const base = tag.toLowerCase().split('-')[0];
    if (isLocale(base)) return base;
  }
  if (isLocale(input.cookie)) return input.cookie;
  const ranked = (input.acceptLanguage ?? '')
    .split(',')
    .map((part, i) => {
      const [tag = '', ...params] = part.trim().split(';');
      const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
      return { base: tag.toLowerCase().split('-')[0], q: q ? Number(q.slice(2)) : 1, i };
    })
    .filter((x) => x.q > 0)
    .sort((a, b) => b.q - a.q || a.i - b.i);
  for (const { base } of ranked) if (isLocale(base)) return base;
  return DEFAULT_LOCALE;
}

export function catalogueKeys(locale: Locale): string[] {
  return Object.keys(catalogues[locale]);
}
