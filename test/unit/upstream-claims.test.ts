import { appleIdentity, isAppleRelayAddress, parseAppleUser } from '../../src/upstream/apple.js';
import { googleIdentity } from '../../src/upstream/google.js';
import { parseCallbackParams } from '../../src/upstream/index.js';

describe('Google identity claims', () => {
  it('keeps the configured issuer as the identity issuer whatever form iss had', () => {
    const identity = googleIdentity('https://accounts.google.com', { iss: 'accounts.google.com', sub: '1', email: 'a@gmail.com', email_verified: true });
    expect(identity.issuer).toBe('https://accounts.google.com');
  });

  it('treats an email without email_verified as unverified, and ignores email_verified without an email', () => {
    expect(googleIdentity('i', { sub: '1', email: 'a@gmail.com' })).toMatchObject({ emailVerified: false, emailTrustedForRegistration: false });
    expect(googleIdentity('i', { sub: '1', email_verified: true })).toMatchObject({ emailVerified: false, emailTrustedForRegistration: false });
    expect(googleIdentity('i', { sub: '1', email: 'A@GMAIL.COM', email_verified: 'true' })).toMatchObject({ emailVerified: true, emailTrustedForRegistration: true });
    expect(googleIdentity('i', { sub: '1', email: 'a@gmail.com.evil.example', email_verified: true }).emailTrustedForRegistration).toBe(false);
  });
});

describe('Apple identity claims', () => {
  it('reads string booleans', () => {
    const identity = appleIdentity('https://appleid.apple.com', { sub: 's', email: 'x@icloud.com', email_verified: 'true', is_private_email: 'false' }, {});
    expect(identity).toMatchObject({ emailVerified: true, isPrivateRelay: false, emailTrustedForRegistration: true });
    expect(appleIdentity('i', { sub: 's', email: 'x@icloud.com', email_verified: 'yes' }, {}).emailVerified).toBe(false);
  });

  it('recognises relay addresses case-insensitively', () => {
    expect(isAppleRelayAddress('Ab12@PrivateRelay.AppleID.com')).toBe(true);
    expect(isAppleRelayAddress('someone@privaterelay.appleid.com.evil.example')).toBe(false);
  });

  it('takes only a well-formed name from the `user` field', () => {
    expect(parseAppleUser('{"name":{"firstName":"Taro","lastName":"Yamada"},"email":"x@y"}')).toEqual({ name: 'Taro Yamada', givenName: 'Taro', familyName: 'Yamada' });
    expect(parseAppleUser('{"name":{"firstName":"Taro"}}')).toEqual({ name: 'Taro', givenName: 'Taro' });
    expect(parseAppleUser('not json')).toEqual({});
    expect(parseAppleUser('{"name":"Taro"}')).toEqual({});
    expect(parseAppleUser('{"name":{"firstName":42}}')).toEqual({});
    expect(parseAppleUser(undefined)).toEqual({});
  });
});

describe('callback parameters', () => {
  it('keeps single strings of the known fields, refuses repeated or oversized ones', () => {
    expect(parseCallbackParams({ code: 'c', state: 's', other: ['x', 'y'], iss: 'z' })).toEqual({ code: 'c', state: 's' });
    expect(parseCallbackParams({ code: ['c', 'd'], state: 's' })).toBeUndefined();
    expect(parseCallbackParams({ state: 's', user: 'x'.repeat(9000) })).toBeUndefined();
    expect(parseCallbackParams({ state: '', code: 'c' })).toEqual({ code: 'c' });
  });
});
