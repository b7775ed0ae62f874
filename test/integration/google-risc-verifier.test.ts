import { UpstreamLoginStore } from '../../src/accounts/upstream-login-store.js';
import type { Database } from '../../src/db/database.js';
import { SetRefused, UpstreamError, UpstreamProviders } from '../../src/upstream/index.js';
import { FakeGoogle } from '../fakes/google.js';
import { describeBackends, openTestDatabase, testConfig } from '../support/harness.js';

let db: Database;
let google: FakeGoogle;
let logins: UpstreamLoginStore;

const providersFor = (env: Record<string, string>) => new UpstreamProviders({ config: testConfig(env).upstream, logins, jwksCooldownMs: 0 });

beforeAll(async () => {
  db = await openTestDatabase();
  logins = new UpstreamLoginStore(db.pool);
  google = await new FakeGoogle().start();
});
afterAll(async () => {
  await google.close();
  await db.close();
});

const failureOf = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);

describe(`Google RISC verifier against the emulator (${describeBackends()})`, () => {
  it('reads the key set from risc-configuration and names the subject under the issuer Google identities are stored by', async () => {
    const upstream = providersFor({ ...google.env(), UPSTREAM_TIMEOUT_MS: '5000' });
    const event = await upstream.verifyGoogleSecurityEvent(await google.signSecurityEvent({ type: 'account-disabled', sub: '1001', reason: 'hijacking', jti: 'j-1' }));
    expect(event).toMatchObject({ type: 'account-disabled', jti: 'j-1', reason: 'hijacking', subject: { issuer: google.issuer, subject: '1001' } });
    expect(google.requestsTo('/.well-known/risc-configuration')).not.toHaveLength(0);
  });

  it('follows a key rotation: a SET signed with a newly published key verifies', async () => {
    const upstream = providersFor({ ...google.env(), UPSTREAM_TIMEOUT_MS: '5000' });
    await upstream.verifyGoogleSecurityEvent(await google.signSecurityEvent({ type: 'sessions-revoked', sub: '1002' }));
    await google.rotateKeys();
    const event = await upstream.verifyGoogleSecurityEvent(await google.signSecurityEvent({ type: 'sessions-revoked', sub: '1002' }));
    expect(event.type).toBe('sessions-revoked');
  });

  it('says "unavailable" (retry later), not a refusal, when the RISC issuer cannot be reached', async () => {
    const upstream = providersFor({ ...google.env(), GOOGLE_RISC_ISSUER: 'http://127.0.0.1:1', UPSTREAM_TIMEOUT_MS: '2000' });
    const err = await failureOf(upstream.verifyGoogleSecurityEvent(await google.signSecurityEvent({ type: 'sessions-revoked', sub: '1003' })));
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).not.toBeInstanceOf(SetRefused);
    expect((err as UpstreamError).reason).toBe('unavailable');
  });

  it('refuses a SET for a client of another project, as invalid_audience', async () => {
    const upstream = providersFor({ ...google.env(), UPSTREAM_TIMEOUT_MS: '5000' });
    const err = await failureOf(upstream.verifyGoogleSecurityEvent(await google.signSecurityEvent({ type: 'sessions-revoked', sub: '1004' }, { aud: 'x.apps.googleusercontent.com' })));
    expect(err).toBeInstanceOf(SetRefused);
    expect((err as SetRefused).err).toBe('invalid_audience');
  });
});
