import { maskEmail, parseEmailAddress } from '../../src/accounts/email-address.js';

describe('parseEmailAddress', () => {
  it('keeps the local part as typed, lower-cases the domain, and keys on the lower-cased whole', () => {
    expect(parseEmailAddress('  Foo.Bar@Example.TEST ')).toEqual({ address: 'Foo.Bar@example.test', key: 'foo.bar@example.test' });
  });

  it.each(['', 'no-at-sign', 'a@b', 'a b@example.test', 'a@-example.test', '<a>@example.test', `${'a'.repeat(65)}@example.test`])(
    'refuses %j', (raw) => {
      expect(parseEmailAddress(raw)).toBeUndefined();
    });

  it('refuses values that are not strings', () => {
    expect(parseEmailAddress(42)).toBeUndefined();
  });
});

describe('maskEmail', () => {
  it('shows only the first character of the local part', () => {
    expect(maskEmail('taro@example.test')).toBe('t•••@example.test');
  });
});
