import { randomUUID } from 'node:crypto';
import { AccountStore, type Account } from '../../src/accounts/account-store.js';
import { parseEmailAddress, type EmailAddress } from '../../src/accounts/email-address.js';
import { PasskeyStore } from '../../src/accounts/passkey-store.js';
import { withTransaction, type Database } from '../../src/db/database.js';
import {
  PASSKEY_CHALLENGE_TTL_SECONDS, PasskeyMethod, parseAuthenticationResponse, parsePasskeyName, parseRegistrationResponse, webauthnUserId,
} from '../../src/methods/passkey.js';
import { SoftwareAuthenticator, withTamperedSignature, type AuthenticatorOptions } from '../fakes/software-authenticator.js';
import { openTestDatabase, uniqueEmail } from '../support/harness.js';

const RP_ID = 'id.example.test';
const ORIGIN = 'https://id.example.test';

let db: Database;
let accounts: AccountStore;
let store: PasskeyStore;
beforeAll(async () => {
  db = await openTestDatabase();
  accounts = new AccountStore(db.pool);
  store = new PasskeyStore(db.pool);
});
afterAll(async () => { await db.close(); });

async function newAccount(): Promise<Account> {
  const email = parseEmailAddress(uniqueEmail('passkey')) as EmailAddress;
  return withTransaction(db.pool, (tx) => accounts.createAccountWithVerifiedEmail(tx, email));
}

function setup(start = new Date()) {
  let clock = start;
  const method = new PasskeyMethod({ store, rpId: RP_ID, rpName: 'Tsunagi', origins: [ORIGIN, 'https://login.id.example.test'], now: () => clock });
  return {
    method,
    advance(seconds: number) { clock = new Date(clock.getTime() + seconds * 1000); },
    /** An account with one registered passkey on a fresh software authenticator. */
    async registered(options: AuthenticatorOptions = {}) {
      const account = await newAccount();
      const authenticator = new SoftwareAuthenticator(RP_ID, ORIGIN, options);
      const binding = `account:${randomUUID()}`;
      const created = await method.verifyRegistration(account, binding, authenticator.register(await method.registrationOptions(account, binding)), 'Laptop');
      if (!created.ok) throw new Error(`registration failed: ${created.reason}`);
      return { account, authenticator };
    },
  };
}

const interaction = () => `int-${randomUUID()}`;

describe('PasskeyMethod registration', () => {
  it('stores a new passkey with its name, key, counter, transports and device type', async () => {
    const t = setup();
    const account = await newAccount();
    const binding = `account:${randomUUID()}`;
    const authenticator = new SoftwareAuthenticator(RP_ID, ORIGIN);
    const options = await t.method.registrationOptions(account, binding);
    const result = await t.method.verifyRegistration(account, binding, authenticator.register(options), 'My phone');
    expect(result).toMatchObject({ ok: true, passkey: { id: authenticator.id, accountId: account.id, name: 'My phone', deviceType: 'singleDevice', backedUp: false, transports: ['internal'], counter: 0 } });
    expect(await store.listForAccount(account.id)).toEqual([
      { id: authenticator.id, name: 'My phone', createdAt: expect.any(Date), lastUsedAt: null, deviceType: 'singleDevice', backedUp: false, transports: ['internal'] },
    ]);
    expect(await store.countForAccount(account.id)).toBe(1);
  });

  it('asks for a discoverable credential for the account, named by its email, without its existing passkeys', async () => {
    const t = setup();
    const { account, authenticator } = await t.registered();
    const options = await t.method.registrationOptions(account, `account:${randomUUID()}`);
    expect(options.rp).toEqual({ name: 'Tsunagi', id: RP_ID });
    expect(options.user.name).toBe(account.emails[0]?.address);
    expect(options.user.id).toBe(Buffer.from(webauthnUserId(account.id)).toString('base64url'));
    expect(options.authenticatorSelection).toMatchObject({ residentKey: 'required', userVerification: 'preferred' });
    expect(options.excludeCredentials).toEqual([{ id: authenticator.id, type: 'public-key', transports: ['internal'] }]);
  });

  it('records a synced passkey as multi-device and backed up', async () => {
    const t = setup();
    const { account } = await t.registered({ synced: true });
    expect(await store.listForAccount(account.id)).toMatchObject([{ deviceType: 'multiDevice', backedUp: true }]);
  });

  it('refuses a registration challenge made for another account', async () => {
    const t = setup();
    const [alice, mallory] = [await newAccount(), await newAccount()];
    const binding = `account:${randomUUID()}`;
    const response = new SoftwareAuthenticator(RP_ID, ORIGIN).register(await t.method.registrationOptions(alice, binding));
    expect(await t.method.verifyRegistration(mallory, binding, response, 'x')).toEqual({ ok: false, reason: 'challenge_mismatch' });
    expect(await store.countForAccount(mallory.id)).toBe(0);
    // Alice's own ceremony is untouched by the refused attempt.
    expect((await t.method.verifyRegistration(alice, binding, response, 'x')).ok).toBe(true);
  });

  it('refuses a registration from another account-page session', async () => {
    const t = setup();
    const account = await newAccount();
    const response = new SoftwareAuthenticator(RP_ID, ORIGIN).register(await t.method.registrationOptions(account, `account:${randomUUID()}`));
    expect(await t.method.verifyRegistration(account, `account:${randomUUID()}`, response, 'x')).toEqual({ ok: false, reason: 'challenge_mismatch' });
  });

  it('refuses a registration challenge used twice', async () => {
    const t = setup();
    const account = await newAccount();
    const binding = `account:${randomUUID()}`;
    const options = await t.method.registrationOptions(account, binding);
    expect((await t.method.verifyRegistration(account, binding, new SoftwareAuthenticator(RP_ID, ORIGIN).register(options), 'a')).ok).toBe(true);
    const second = new SoftwareAuthenticator(RP_ID, ORIGIN).register(options);
    expect(await t.method.verifyRegistration(account, binding, second, 'b')).toEqual({ ok: false, reason: 'challenge_used' });
    expect(await store.countForAccount(account.id)).toBe(1);
  });

  it('refuses a registration made on another origin or for another RP ID', async () => {
    const t = setup();
    const account = await newAccount();
    const binding = `account:${randomUUID()}`;
    const phishing = new SoftwareAuthenticator(RP_ID, 'https://id.example.test.evil.example');
    expect(await t.method.verifyRegistration(account, binding, phishing.register(await t.method.registrationOptions(account, binding)), 'x'))
      .toEqual({ ok: false, reason: 'wrong_origin' });
    const otherRp = new SoftwareAuthenticator('evil.example', ORIGIN);
    expect(await t.method.verifyRegistration(account, binding, otherRp.register(await t.method.registrationOptions(account, binding)), 'x'))
      .toEqual({ ok: false, reason: 'wrong_rp_id' });
    expect(await store.countForAccount(account.id)).toBe(0);
  });

  it('refuses to register the same credential twice', async () => {
    const t = setup();
    const { account, authenticator } = await t.registered();
    const binding = `account:${randomUUID()}`;
    expect(await t.method.verifyRegistration(account, binding, authenticator.register(await t.method.registrationOptions(account, binding)), 'again'))
      .toEqual({ ok: false, reason: 'already_registered' });
  });

  it('refuses an expired registration challenge', async () => {
    const t = setup();
    const account = await newAccount();
    const binding = `account:${randomUUID()}`;
    const options = await t.method.registrationOptions(account, binding);
    t.advance(PASSKEY_CHALLENGE_TTL_SECONDS);
    expect(await t.method.verifyRegistration(account, binding, new SoftwareAuthenticator(RP_ID, ORIGIN).register(options), 'x'))
      .toEqual({ ok: false, reason: 'challenge_expired' });
  });
});

describe('PasskeyMethod sign-in', () => {
  it('proves the account with amr hwk for a device-bound passkey, bound to the interaction', async () => {
    const t = setup();
    const { account, authenticator } = await t.registered();
    const uid = interaction();
    const options = await t.method.authenticationOptions(uid);
    expect(options.allowCredentials).toEqual([]);
    expect(options.userVerification).toBe('preferred');
    expect(options.rpId).toBe(RP_ID);
    const result = await t.method.verifyAuthentication(uid, authenticator.authenticate(options));
    expect(result).toMatchObject({
      ok: true,
      proof: { interactionUid: uid, method: 'passkey', amr: ['hwk'], subject: { kind: 'account', accountId: account.id }, at: expect.any(Date) },
    });
    expect(await store.listForAccount(account.id)).toMatchObject([{ lastUsedAt: expect.any(Date) }]);
    expect((await store.findByCredentialId(authenticator.id))?.counter).toBe(1);
  });

  it('proves the account with amr swk for a synced passkey', async () => {
    const t = setup();
    const { authenticator } = await t.registered({ synced: true, counting: false });
    const uid = interaction();
    const result = await t.method.verifyAuthentication(uid, authenticator.authenticate(await t.method.authenticationOptions(uid)));
    expect(result.ok && result.proof.amr).toEqual(['swk']);
  });

  it('accepts passkeys whose counter stays 0, every time', async () => {
    const t = setup();
    const { authenticator } = await t.registered({ counting: false });
    for (let i = 0; i < 2; i++) {
      const uid = interaction();
      expect((await t.method.verifyAuthentication(uid, authenticator.authenticate(await t.method.authenticationOptions(uid)))).ok).toBe(true);
    }
  });

  it('refuses a challenge used twice (a replayed assertion)', async () => {
    const t = setup();
    const { authenticator } = await t.registered();
    const uid = interaction();
    const response = authenticator.authenticate(await t.method.authenticationOptions(uid));
    expect((await t.method.verifyAuthentication(uid, response)).ok).toBe(true);
    expect(await t.method.verifyAuthentication(uid, response)).toEqual({ ok: false, reason: 'challenge_used' });
  });

  it('refuses a challenge from another interaction, and leaves it to its own interaction', async () => {
    const t = setup();
    const { authenticator } = await t.registered();
    const [x, y] = [interaction(), interaction()];
    const response = authenticator.authenticate(await t.method.authenticationOptions(x));
    expect(await t.method.verifyAuthentication(y, response)).toEqual({ ok: false, reason: 'challenge_mismatch' });
    const inX = await t.method.verifyAuthentication(x, response);
    expect(inX.ok && inX.proof.interactionUid).toBe(x);
  });

  it('refuses a challenge the server never made', async () => {
    const t = setup();
    const { authenticator } = await t.registered();
    const uid = interaction();
    const options = await t.method.authenticationOptions(uid);
    const forged = authenticator.authenticate(options, { challenge: Buffer.from('made-up-challenge-of-enough-length').toString('base64url') });
    expect(await t.method.verifyAuthentication(uid, forged)).toEqual({ ok: false, reason: 'unknown_challenge' });
  });

  it('refuses an expired challenge', async () => {
    const t = setup();
    const { authenticator } = await t.registered();
    const uid = interaction();
    const options = await t.method.authenticationOptions(uid);
    t.advance(PASSKEY_CHALLENGE_TTL_SECONDS + 1);
    expect(await t.method.verifyAuthentication(uid, authenticator.authenticate(options))).toEqual({ ok: false, reason: 'challenge_expired' });
  });

  it('refuses an assertion made on another origin', async () => {
    const t = setup();
    const { authenticator } = await t.registered();
    const uid = interaction();
    const response = authenticator.authenticate(await t.method.authenticationOptions(uid), { origin: 'https://id-example-test.evil.example' });
    expect(await t.method.verifyAuthentication(uid, response)).toEqual({ ok: false, reason: 'wrong_origin' });
  });

  it('accepts every configured origin', async () => {
    const t = setup();
    const { authenticator } = await t.registered();
    const uid = interaction();
    const response = authenticator.authenticate(await t.method.authenticationOptions(uid), { origin: 'https://login.id.example.test' });
    expect((await t.method.verifyAuthentication(uid, response)).ok).toBe(true);
  });

  it('refuses an assertion for another RP ID', async () => {
    const t = setup();
    const { authenticator } = await t.registered();
    const uid = interaction();
    const response = authenticator.authenticate(await t.method.authenticationOptions(uid), { rpId: 'example.test' });
    expect(await t.method.verifyAuthentication(uid, response)).toEqual({ ok: false, reason: 'wrong_rp_id' });
  });

  it('refuses an unknown credential', async () => {
    const t = setup();
    await t.registered();
    const stranger = new SoftwareAuthenticator(RP_ID, ORIGIN);
    const uid = interaction();
    expect(await t.method.verifyAuthentication(uid, stranger.authenticate(await t.method.authenticationOptions(uid))))
      .toEqual({ ok: false, reason: 'unknown_credential' });
  });

  it('refuses a counter that goes backwards or stands still, and keeps the stored counter', async () => {
    const t = setup();
    const { authenticator } = await t.registered({ counter: 10 });
    let uid = interaction();
    expect((await t.method.verifyAuthentication(uid, authenticator.authenticate(await t.method.authenticationOptions(uid)))).ok).toBe(true);
    expect((await store.findByCredentialId(authenticator.id))?.counter).toBe(11);
    for (const counter of [5, 11]) {
      uid = interaction();
      const cloned = authenticator.authenticate(await t.method.authenticationOptions(uid), { counter });
      expect(await t.method.verifyAuthentication(uid, cloned)).toEqual({ ok: false, reason: 'counter_regressed' });
    }
    expect((await store.findByCredentialId(authenticator.id))?.counter).toBe(11);
  });

  it('refuses a counter update that would move backwards, in SQL', async () => {
    const t = setup();
    const { authenticator } = await t.registered();
    const at = new Date();
    expect(await store.recordUse(authenticator.id, { counter: 7, backedUp: false, at })).toBe(true);
    expect(await store.recordUse(authenticator.id, { counter: 7, backedUp: false, at })).toBe(false);
    expect(await store.recordUse(authenticator.id, { counter: 3, backedUp: false, at })).toBe(false);
    expect((await store.findByCredentialId(authenticator.id))?.counter).toBe(7);
  });

  it('refuses a tampered signature', async () => {
    const t = setup();
    const { authenticator } = await t.registered();
    const uid = interaction();
    const response = withTamperedSignature(authenticator.authenticate(await t.method.authenticationOptions(uid)));
    expect(await t.method.verifyAuthentication(uid, response)).toEqual({ ok: false, reason: 'bad_signature' });
    expect((await store.findByCredentialId(authenticator.id))?.lastUsedAt).toBeNull();
  });

  it('refuses an assertion signed by another key for a known credential id', async () => {
    const t = setup();
    const { authenticator } = await t.registered();
    const impostor = new SoftwareAuthenticator(RP_ID, ORIGIN);
    const uid = interaction();
    const signed = impostor.authenticate(await t.method.authenticationOptions(uid));
    const forged = { ...signed, id: authenticator.id, rawId: authenticator.id };
    expect(await t.method.verifyAuthentication(uid, forged)).toEqual({ ok: false, reason: 'bad_signature' });
  });

  it('refuses an assertion without user presence', async () => {
    const t = setup();
    const { authenticator } = await t.registered();
    const uid = interaction();
    const response = authenticator.authenticate(await t.method.authenticationOptions(uid), { userPresent: false });
    expect(await t.method.verifyAuthentication(uid, response)).toEqual({ ok: false, reason: 'user_not_present' });
  });

  it('refuses a registration response presented as a sign-in', async () => {
    const t = setup();
    const { authenticator } = await t.registered();
    const uid = interaction();
    const response = authenticator.authenticate(await t.method.authenticationOptions(uid), { type: 'webauthn.create' });
    expect(await t.method.verifyAuthentication(uid, response)).toEqual({ ok: false, reason: 'invalid_response' });
  });
});

describe('PasskeyStore', () => {
  it('renames and deletes only within the owning account', async () => {
    const t = setup();
    const { account, authenticator } = await t.registered();
    const other = await newAccount();
    expect(await store.rename(other.id, authenticator.id, 'stolen')).toBe(false);
    expect(await store.delete(other.id, authenticator.id)).toBe(false);
    expect(await store.rename(account.id, authenticator.id, 'Work laptop')).toBe(true);
    expect((await store.listForAccount(account.id))[0]?.name).toBe('Work laptop');
    expect(await store.delete(account.id, authenticator.id)).toBe(true);
    expect(await store.countForAccount(account.id)).toBe(0);
  });
});

describe('passkey input parsing', () => {
  it('accepts what a browser posts and drops unknown fields', () => {
    const a = new SoftwareAuthenticator(RP_ID, ORIGIN);
    const registration = a.register({
      challenge: 'Y2hhbGxlbmdl', rp: { name: 'x', id: RP_ID }, user: { id: 'dXNlcg', name: 'u', displayName: 'u' }, pubKeyCredParams: [],
    });
    expect(parseRegistrationResponse({ ...registration, extra: 1 })).toEqual(registration);
    const assertion = a.authenticate({ challenge: 'Y2hhbGxlbmdl' });
    expect(parseAuthenticationResponse(assertion)).toEqual(assertion);
  });

  it('refuses malformed responses', () => {
    const a = new SoftwareAuthenticator(RP_ID, ORIGIN);
    const assertion = a.authenticate({ challenge: 'Y2hhbGxlbmdl' });
    for (const bad of [null, 'x', [], { ...assertion, type: 'password' }, { ...assertion, rawId: 'other' },
      { ...assertion, response: { ...assertion.response, signature: 'not base64url!' } }, { ...assertion, response: undefined }]) {
      expect(parseAuthenticationResponse(bad)).toBeUndefined();
    }
  });

  it('cleans a passkey name to one line of at most 64 characters', () => {
    expect(parsePasskeyName('  My\n phone\t ')).toBe('My phone');
    expect(parsePasskeyName('   ')).toBeUndefined();
    expect(parsePasskeyName(42)).toBeUndefined();
    expect(parsePasskeyName('あ'.repeat(100))).toBe('あ'.repeat(64));
  });
});
