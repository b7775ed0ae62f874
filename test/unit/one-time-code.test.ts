import { CODE_LENGTH, codeMatches, generateCode, hashCode, parseCode } from '../../src/methods/one-time-code.js';

describe('parseCode', () => {
  it.each([
    ['123456', '123456'],
    ['123 456', '123456'],
    ['123-456', '123456'],
    [' 12 34 56 ', '123456'],
    ['000001', '000001'],
  ])('accepts %j as %s', (raw, digits) => {
    expect(parseCode(raw)).toBe(digits);
  });

  it.each(['12345', '1234567', '123 45', '12a456', 'abcdef', '', '123456\u0000'])('refuses %j', (raw) => {
    expect(parseCode(raw)).toBeUndefined();
  });

  it('refuses values that are not strings', () => {
    expect(parseCode(123456)).toBeUndefined();
    expect(parseCode(undefined)).toBeUndefined();
    expect(parseCode(['123456'])).toBeUndefined();
  });
});

describe('generateCode', () => {
  it('always gives six digits, leading zeros included', () => {
    for (let i = 0; i < 500; i++) expect(generateCode()).toMatch(new RegExp(`^\\d{${CODE_LENGTH}}$`));
  });
});

describe('hashCode', () => {
  const pepper = 'pepper-for-tests';

  it('gives different hashes for the same code under different challenge ids', () => {
    expect(hashCode(pepper, 'challenge-a', '123456')).not.toBe(hashCode(pepper, 'challenge-b', '123456'));
  });

  it('gives different hashes under a different pepper', () => {
    expect(hashCode(pepper, 'challenge-a', '123456')).not.toBe(hashCode('another-pepper', 'challenge-a', '123456'));
  });

  it('does not contain the code', () => {
    expect(hashCode(pepper, 'challenge-a', '123456')).not.toContain('123456');
  });

  it('matches only the code it was made from, for the challenge it was made for', () => {
    const stored = hashCode(pepper, 'challenge-a', '123456');
    expect(codeMatches(pepper, 'challenge-a', '123456', stored)).toBe(true);
    expect(codeMatches(pepper, 'challenge-a', '123457', stored)).toBe(false);
    expect(codeMatches(pepper, 'challenge-b', '123456', stored)).toBe(false);
    expect(codeMatches(pepper, 'challenge-a', '123456', 'short')).toBe(false);
  });
});
