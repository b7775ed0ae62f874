import { catalogueKeys, isLocale, LOCALES, negotiateLocale, translator } from '../../src/i18n/index.js';

describe('negotiateLocale', () => {
  it('prefers ui_locales over the cookie and Accept-Language', () => {
    expect(negotiateLocale({ uiLocales: 'ja', cookie: 'en', acceptLanguage: 'en' })).toBe('ja');
  });

  it('takes the first supported tag of ui_locales, matching on the base language', () => {
    expect(negotiateLocale({ uiLocales: 'fr-CA ja-JP en', cookie: 'en' })).toBe('ja');
    expect(negotiateLocale({ uiLocales: 'EN-gb', cookie: 'ja' })).toBe('en');
  });

  it('falls back to the cookie when no ui_locales tag is supported', () => {
    expect(negotiateLocale({ uiLocales: 'fr de', cookie: 'ja', acceptLanguage: 'en' })).toBe('ja');
  });

  it('ignores a cookie that is not a supported locale', () => {
    expect(negotiateLocale({ cookie: 'fr', acceptLanguage: 'ja' })).toBe('ja');
  });

  it('uses the cookie over Accept-Language', () => {
    expect(negotiateLocale({ cookie: 'en', acceptLanguage: 'ja' })).toBe('en');
  });

  it('ranks Accept-Language by q value, not by position', () => {
    expect(negotiateLocale({ acceptLanguage: 'en;q=0.5, ja;q=0.8' })).toBe('ja');
    expect(negotiateLocale({ acceptLanguage: 'ja;q=0.3, en-US;q=0.9' })).toBe('en');
  });

  it('keeps header order between equal q values', () => {
    expect(negotiateLocale({ acceptLanguage: 'ja-JP, en' })).toBe('ja');
    expect(negotiateLocale({ acceptLanguage: 'en;q=0.7, ja;q=0.7' })).toBe('en');
  });

  it('skips unsupported languages and languages refused with q=0', () => {
    expect(negotiateLocale({ acceptLanguage: 'fr, de;q=0.9, ja;q=0.1' })).toBe('ja');
    expect(negotiateLocale({ acceptLanguage: 'ja;q=0, fr' })).toBe('en');
  });

  it('defaults to en when nothing is given', () => {
    expect(negotiateLocale({})).toBe('en');
  });
});

describe('message catalogues', () => {
  // Plural forms (<key>.one, ...) exist only where a language has them: Japanese has none.
  const PLURAL_FORM = /\.(zero|one|two|few|many)$/;
  it('has exactly the same keys in en and ja, apart from plural forms', () => {
    const base = (keys: string[]) => keys.filter((k) => !PLURAL_FORM.test(k)).sort();
    expect(base(catalogueKeys('ja'))).toEqual(base(catalogueKeys('en')));
    expect(catalogueKeys('en').length).toBeGreaterThan(10);
    // Every plural form belongs to a base message.
    for (const l of ['en', 'ja'] as const) {
      for (const k of catalogueKeys(l).filter((key) => PLURAL_FORM.test(key))) expect(catalogueKeys(l)).toContain(k.replace(PLURAL_FORM, ''));
    }
  });

  it('chooses plural forms with the language rules: "1 minute" in English, no plural in Japanese', () => {
    expect(translator('en')('login.error.rate_limited', { minutes: 1 })).toBe('Too many codes were requested. Please try again in 1 minute.');
    expect(translator('en')('login.error.rate_limited', { minutes: 2 })).toBe('Too many codes were requested. Please try again in 2 minutes.');
    expect(translator('en')('code.error.wrong_code', { left: 1 })).toBe('That code is not right. 1 try left.');
    expect(translator('ja')('login.error.rate_limited', { minutes: 1 })).toBe('確認コードの送信回数が上限に達しました。1 分後にもう一度お試しください。');
  });

  it('uses the same {placeholders} for a key in every language', () => {
    const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
    const en = translator('en');
    const ja = translator('ja');
    for (const key of catalogueKeys('en')) expect({ key, vars: placeholders(ja(key)) }).toEqual({ key, vars: placeholders(en(key)) });
  });

  it('knows only en and ja as locales', () => {
    expect(LOCALES).toEqual(['en', 'ja']);
    expect(isLocale('ja')).toBe(true);
    expect(isLocale('fr')).toBe(false);
    expect(isLocale(undefined)).toBe(false);
  });
});

describe('translator', () => {
  it('fills {vars} into the message', () => {
    expect(translator('en')('code.error.wrong_code', { left: 3 })).toBe('That code is not right. 3 tries left.');
    expect(translator('ja')('mail.code.subject', { code: '123456' })).toBe('Tsunagi の確認コード: 123456');
  });

  it('fills every occurrence and leaves unknown placeholders as they are', () => {
    expect(translator('en')('login.lead', {})).toBe('to continue to {client}');
    expect(translator('en')('mail.code.body', { code: '654321', minutes: 10 })).toMatch(/654321[\s\S]*10 minutes/);
  });

  it('throws on a key no catalogue has', () => {
    expect(() => translator('ja')('no.such.key')).toThrow(/missing message "no.such.key"/);
  });
});
