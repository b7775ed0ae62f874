import { formatPhoneNumber } from '../../src/accounts/phone-number.js';
import { describeGrantedScopes, formatDate, formatDateTime } from '../../src/i18n/format.js';

describe('how the account page shows times, numbers and access', () => {
  const evening = new Date('2026-11-29T18:44:00Z');

  it('shows times in Japan time for Japanese readers and in UTC otherwise, with the zone named', () => {
    expect(formatDateTime(evening, 'ja')).toBe('2026/11/30 3:44 JST');
    expect(formatDateTime(evening, 'en')).toBe('29 Nov 2026, 18:44 UTC');
    expect(formatDate(evening, 'ja')).toBe('2026/11/30');
    expect(formatDate(evening, 'en')).toBe('29 Nov 2026');
  });

  it('shows a number of the default region in national format, any other internationally', () => {
    expect(formatPhoneNumber('+818012345678', 'JP')).toBe('080-1234-5678');
    expect(formatPhoneNumber('+12025550123', 'JP')).toBe('+1 202 555 0123');
    expect(formatPhoneNumber('+12025550123', 'us')).toBe('(202) 555-0123');
  });

  it('names what an application may see, leaving unknown scopes as they are', () => {
    expect(describeGrantedScopes('openid email profile phone', 'en')).toBe('Email address, Name and Phone number');
    expect(describeGrantedScopes('openid email profile phone', 'ja')).toBe('メールアドレス、名前、電話番号');
    expect(describeGrantedScopes('openid', 'en')).toBe('Sign-in only');
    expect(describeGrantedScopes('openid email orders:read', 'en')).toBe('Email address and orders:read');
  });
});
