import { checkEmailAddress, emailProblemMessage, maskEmail, parseEmailAddress } from '../../src/accounts/email-address.js';

describe('parseEmailAddress', () => {
  it('keeps the local part as typed, lower-cases the domain, and keys on the lower-cased whole', () => {
    expect(parseEmailAddress('  Foo.Bar@Example.TEST ')).toEqual({ address: 'Foo.Bar@example.test', key: 'foo.bar@example.test' });
  });

  it('accepts every RFC 5322 atext character and dots anywhere in the local part (older Japanese carrier addresses)', () => {
    expect(parseEmailAddress("a!#$%&'*+/=?^_`{|}~-b@example.test")?.key).toBe("a!#$%&'*+/=?^_`{|}~-b@example.test");
    expect(parseEmailAddress('taro..hanako.@docomo.ne.jp')?.address).toBe('taro..hanako.@docomo.ne.jp');
  });

  it.each(['', 'no-at-sign', 'a@b', 'a b@example.test', 'a@-example.test', '<a>@example.test', `${'a'.repeat(65)}@example.test`, '"a b"@example.test', 'a@example.test.', 'a@exa_mple.test'])(
    'refuses %j', (raw) => {
      expect(parseEmailAddress(raw)).toBeUndefined();
    });

  it('refuses values that are not strings', () => {
    expect(parseEmailAddress(42)).toBeUndefined();
    expect(parseEmailAddress(['a@example.test'])).toBeUndefined();
    expect(parseEmailAddress({ email: 'a@example.test' })).toBeUndefined();
  });
});

describe('look-alike addresses (issue 9 section 3)', () => {
  const kate = parseEmailAddress('kate@example.com');

  it.each([
    ['the Kelvin sign U+212A', '\u212Aate@example.com'],
    ['a dotless i U+0131', 'kıte@example.com'],
    ['a dotted capital I U+0130', 'KATİE@example.com'],
    ['full-width letters', 'ｋａｔｅ@example.com'],
    ['a Cyrillic a', 'k\u0430te@example.com'],
    ['a combining accent', 'kate\u0301@example.com'],
    ['U+FFFD from invalid UTF-8', 'kate\uFFFD@example.com'],
  ])('refuses a non-ASCII local part: %s', (_label, raw) => {
    expect(checkEmailAddress(raw)).toEqual({ ok: false, problem: 'non_ascii_local_part' });
  });

  it.each([
    ['NUL', 'kate\u0000@example.com'],
    ['an RTL override U+202E', '\u202Ekate@example.com'],
    ['a right-to-left mark in the domain', 'kate@example\u200F.com'],
    ['a zero-width space', 'ka\u200Bte@example.com'],
    ['a zero-width joiner', 'kate\u200D@example.com'],
    ['a soft hyphen', 'ka\u00ADte@example.com'],
    ['a lone surrogate', 'kate\uD800@example.com'],
    ['a private-use character', 'kate@exa\uE000mple.com'],
    ['an unassigned code point', 'kate@exa\u0378mple.com'],
    ['a line break', 'kate@example.com\nBcc: x@example.com'],
  ])('refuses control, format, surrogate, private-use and unassigned characters: %s', (_label, raw) => {
    expect(checkEmailAddress(raw)).toEqual({ ok: false, problem: 'characters' });
  });

  it.each([
    ['full-width letters', 'kate@ｅｘａｍｐｌｅ.com'],
    ['the Kelvin sign', 'kate@\u212Aexample.com'],
    ['an upper-case non-ASCII letter', 'kate@BÜCHER.example'],
    ['an invalid punycode label', 'kate@xn--zz.example'],
  ])('refuses a domain that IDNA would have to map or cannot convert: %s', (_label, raw) => {
    expect(checkEmailAddress(raw)).toEqual({ ok: false, problem: 'format' });
  });

  it('none of the look-alikes of kate@example.com reaches her key', () => {
    for (const raw of ['\u212Aate@example.com', 'ｋａｔｅ@example.com', 'kate@ｅｘａｍｐｌｅ.com', 'kate@\u212Aexample.com', '\u202Ekate@example.com', 'kate\u200B@example.com']) {
      expect(parseEmailAddress(raw)?.key).not.toBe(kate?.key);
      expect(parseEmailAddress(raw)).toBeUndefined();
    }
  });

  it('stores an internationalised domain in its ASCII form, so both spellings are one key', () => {
    expect(parseEmailAddress('taro@bücher.example')).toEqual({ address: 'taro@xn--bcher-kva.example', key: 'taro@xn--bcher-kva.example' });
    expect(parseEmailAddress('Taro@XN--BCHER-KVA.example')).toEqual({ address: 'Taro@xn--bcher-kva.example', key: 'taro@xn--bcher-kva.example' });
    expect(parseEmailAddress('taro@例え.jp')?.address).toBe('taro@xn--r8jz45g.jp');
  });

  it('names a message for each problem', () => {
    expect(emailProblemMessage('format')).toBe('login.error.invalid_email');
    expect(emailProblemMessage('characters')).toBe('login.error.email_characters');
    expect(emailProblemMessage('non_ascii_local_part')).toBe('login.error.email_non_ascii_local_part');
  });
});

describe('maskEmail', () => {
  it('shows only the first character of the local part', () => {
    expect(maskEmail('taro@example.test')).toBe('t•••@example.test');
  });
});
