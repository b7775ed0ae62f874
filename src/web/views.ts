import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Eta } from 'eta';
import { translator, type Locale } from '../i18n/index.js';

const VIEWS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../views');

export interface PageContext {
  locale: Locale;
  /** CSP nonce for this response. */
  nonce: string;
  csrfToken?: string;
  /** The footer's links to this same page in each language (locale.ts languageLinks). */
  languageLinks: Record<Locale, string>;
}

/**
 * Server-rendered screens: one template per screen inside views/layout.eta. Templates only show
 * what they are given (escaped by default) and translate through `t`; they compute nothing.
 */
export class Views {
  private readonly eta: Eta;

  constructor(cache: boolean) {
    this.eta = new Eta({ views: VIEWS_DIR, cache, autoEscape: true, autoTrim: false });
  }

  render(view: string, page: PageContext, data: Record<string, unknown> = {}): string {
    const t = translator(page.locale);
    return this.eta.render(view, { ...data, t, locale: page.locale, nonce: page.nonce, csrfToken: page.csrfToken ?? '', languageLinks: page.languageLinks });
  }
}
