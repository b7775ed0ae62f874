/**
 * A value shown partly hidden ("t•••@example.com", "•••-••••-1234") together with what a screen
 * reader should say instead of "bullet bullet bullet": a message key (views/locales: masked.*) and
 * its variables. views/partials/masked.eta shows one, the glyphs hidden from assistive technology.
 */
export interface MaskedValue {
  shown: string;
  spoken: { key: 'masked.email' | 'masked.phone'; vars: Record<string, string> };
}
