import { randomUUID } from 'node:crypto';
import { Provider } from 'oidc-provider';
import { AccountStore } from '../../src/accounts/account-store.js';
import type { Database } from '../../src/db/database.js';
import { createAdapterFactory } from '../../src/oidc/adapter/index.js';
import { developmentMasterKeyring } from '../../src/secrets/master-key.js';
import { ClientSecretVault, isHashedSecret } from '../../src/oidc/client-secrets.js';
import { ClientAlreadyExists, ClientNotFound, ClientStore, type ClientMetadata } from '../../src/oidc/client-store.js';
import { SigningKeyStore } from '../../src/oidc/keys.js';
import { openTestDatabase } from '../support/harness.js';

let db: Database;
let clients: ClientStore;
let accounts: AccountStore;
let productionClients: ClientStore;

beforeAll(async () => {
  db = await openTestDatabase();
  const keyring = developmentMasterKeyring();
  const keyStore = new SigningKeyStore(db.pool, keyring);
  await keyStore.ensureKeys();
  // oidc-provider itself decides what valid client metadata is.
  const provider = new Provider('http://127.0.0.1:1', {
    clients: [],
    jwks: (await keyStore.load()).jwks,
    extraClientMetadata: { properties: ['first_party', 'require_email', 'allowed_cors_origins'] },
  });
  const model = provider.Client as unknown as { validate(m: ClientMetadata): Promise<void>; needsSecret(m: ClientMetadata): boolean };
  accounts = new AccountStore(db.pool);
  const vault = await ClientSecretVault.open(db.pool, keyring);
  const reservedClientIds = ['tsunagi-account'];
  clients = new ClientStore(db.pool, (m) => model.validate(m), (m) => model.needsSecret(m), accounts, vault, { production: false, reservedClientIds });
  productionClients = new ClientStore(db.pool, (m) => model.validate(m), (m) => model.needsSecret(m), accounts, vault, { production: true, reservedClientIds });
});
afterAll(async () => { await db.close(); });

const webApp = (extra: ClientMetadata = {}): ClientMetadata => ({
  client_name: `Web app ${randomUUID().slice(0, 8)}`,
  redirect_uris: ['https://rp.example.test/callback'],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  ...extra,
});

async function storedMetadata(clientId: string): Promise<ClientMetadata | undefined> {
  const { rows } = await db.pool.query<{ metadata: ClientMetadata }>('SELECT metadata FROM clients WHERE client_id = $1', [clientId]);
  return rows[0]?.metadata;
}

describe('ClientStore', () => {
  it('gives a confidential client a generated id and secret, and stores what it returns with the secret hashed', async () => {
    const added = await clients.add(webApp());
    expect(added.client_id).toMatch(/^[\w-]{20,}$/);
    expect(added.client_secret).toMatch(/^[\w-]{40,}$/);
    const stored = await storedMetadata(added.client_id as string);
    expect({ ...stored, client_secret: undefined }).toEqual({ ...added, client_secret: undefined });
    expect(stored?.client_secret).toMatch(/^hmac-sha256:[\w-]{43}$/);
    expect(JSON.stringify(stored)).not.toContain(added.client_secret as string);
    const audit = await db.pool.query(`SELECT 1 FROM audit_events WHERE type = 'client_added' AND client_id = $1`, [added.client_id]);
    expect(audit.rowCount).toBe(1);
  });

  it('gives each client its own id and secret', async () => {
    const [a, b] = await Promise.all([clients.add(webApp()), clients.add(webApp())]);
    expect(a?.client_id).not.toBe(b?.client_id);
    expect(a?.client_secret).not.toBe(b?.client_secret);
  });

  it('gives no secret to a public client (token_endpoint_auth_method none), even if one was passed in', async () => {
    const added = await clients.add(webApp({ token_endpoint_auth_method: 'none', client_secret: 'should-not-be-kept-0123456789abcdef' }));
    expect(added.client_id).toEqual(expect.any(String));
    expect(added).not.toHaveProperty('client_secret');
    expect(await storedMetadata(added.client_id as string)).not.toHaveProperty('client_secret');
  });

  it('keeps a client id given by the operator, and Tsunagi\'s own metadata', async () => {
    const clientId = `rp-${randomUUID()}`;
    const added = await clients.add(webApp({ client_id: clientId, first_party: true, require_email: true }));
    expect(added.client_id).toBe(clientId);
    expect(await storedMetadata(clientId)).toMatchObject({ first_party: true, require_email: true });
    const listed = (await clients.list()).find((c) => c.clientId === clientId);
    expect(listed).toMatchObject({ clientId, firstParty: true, source: 'cli', clientName: added.client_name });
  });

  it.each([
    ['without redirect_uris for the authorization code grant', { redirect_uris: undefined }, 'invalid_redirect_uri'],
    ['with a grant type oidc-provider does not support', { grant_types: ['password'] }, 'invalid_client_metadata'],
    ['with a response type that does not match its grant types', { grant_types: ['client_credentials'], response_types: ['code'] }, 'invalid_client_metadata'],
    ['with an unknown token endpoint auth method', { token_endpoint_auth_method: 'magic' }, 'invalid_client_metadata'],
  ])('rejects a client %s and stores nothing', async (_name, patch, error) => {
    const clientId = `bad-${randomUUID()}`;
    const metadata: ClientMetadata = { ...webApp(), ...patch, client_id: clientId };
    for (const [k, v] of Object.entries(metadata)) if (v === undefined) delete metadata[k];
    await expect(clients.add(metadata)).rejects.toMatchObject({ error });
    expect(await storedMetadata(clientId)).toBeUndefined();
  });

  it('masks the secret when showing a client', async () => {
    const added = await clients.add(webApp());
    const shown = await clients.show(added.client_id as string);
    expect(shown.client_secret).toBe('********');
    expect(JSON.stringify(shown)).not.toContain(added.client_secret as string);
    expect(shown.redirect_uris).toEqual(['https://rp.example.test/callback']);
    await expect(clients.show(`missing-${randomUUID()}`)).rejects.toBeInstanceOf(ClientNotFound);
  });

  it('rotates the secret to a new one', async () => {
    const added = await clients.add(webApp());
    const secret = await clients.rotateSecret(added.client_id as string);
    expect(secret).toMatch(/^[\w-]{40,}$/);
    expect(secret).not.toBe(added.client_secret);
    const stored = await storedMetadata(added.client_id as string);
    expect(isHashedSecret(stored?.client_secret)).toBe(true);
    expect(JSON.stringify(stored)).not.toContain(secret);
    expect({ ...stored, client_secret: undefined }).toEqual({ ...added, client_secret: undefined });
  });

  it('refuses to rotate the secret of a public client or of a client that does not exist', async () => {
    const publicClient = await clients.add(webApp({ token_endpoint_auth_method: 'none' }));
    await expect(clients.rotateSecret(publicClient.client_id as string)).rejects.toThrow(/public client/);
    expect(await storedMetadata(publicClient.client_id as string)).not.toHaveProperty('client_secret');
    await expect(clients.rotateSecret(`missing-${randomUUID()}`)).rejects.toBeInstanceOf(ClientNotFound);
  });

  it('removes a client together with everything issued to it, and nothing issued to others', async () => {
    const doomed = await clients.add(webApp());
    const other = await clients.add(webApp());
    const adapterFor = createAdapterFactory(db.pool, undefined);
    const doomedToken = randomUUID();
    const otherToken = randomUUID();
    await adapterFor('AccessToken').upsert(doomedToken, { jti: doomedToken, clientId: doomed.client_id as string }, 600);
    await adapterFor('RefreshToken').upsert(`r-${doomedToken}`, { jti: `r-${doomedToken}`, clientId: doomed.client_id as string }, 600);
    await adapterFor('AccessToken').upsert(otherToken, { jti: otherToken, clientId: other.client_id as string }, 600);

    await clients.remove(doomed.client_id as string);
    expect(await storedMetadata(doomed.client_id as string)).toBeUndefined();
    const { rows } = await db.pool.query(`SELECT id FROM oidc_payloads WHERE payload->>'clientId' = $1`, [doomed.client_id]);
    expect(rows).toHaveLength(0);
    expect(await adapterFor('AccessToken').find(otherToken)).toMatchObject({ clientId: other.client_id });
    await expect(clients.remove(doomed.client_id as string)).rejects.toBeInstanceOf(ClientNotFound);
  });

  it('refuses to add a client whose id exists, leaving the existing one as it was', async () => {
    const existing = await clients.add(webApp());
    await expect(clients.add(webApp({ client_id: existing.client_id, client_name: 'Impostor' }))).rejects.toBeInstanceOf(ClientAlreadyExists);
    expect(await storedMetadata(existing.client_id as string)).toMatchObject({ ...existing, client_secret: expect.stringMatching(/^hmac-sha256:/) });
  });

  it('keeps a reversible, sealed secret only for client_secret_jwt, which oidc-provider needs as an HMAC key', async () => {
    const added = await clients.add(webApp({ token_endpoint_auth_method: 'client_secret_jwt' }));
    const stored = await storedMetadata(added.client_id as string);
    expect(stored?.client_secret).toMatch(/^sealed:v1:/);
    expect(JSON.stringify(stored)).not.toContain(added.client_secret as string);
  });

  it('refuses a chosen client secret too short to be stored hashed', async () => {
    const clientId = `short-${randomUUID()}`;
    await expect(clients.add(webApp({ client_id: clientId, client_secret: 'password1' }))).rejects.toMatchObject({ error: 'invalid_client_metadata' });
    expect(await storedMetadata(clientId)).toBeUndefined();
  });
});

describe('ClientStore registration rules', () => {
  it.each([
    ['client_credentials for a public client', { grant_types: ['client_credentials'], response_types: [], redirect_uris: [], token_endpoint_auth_method: 'none' }, 'invalid_client_metadata', /RFC 6749 section 4.4/],
    ['a wildcard in a redirect URI', { redirect_uris: ['https://*.rp.example.test/callback'] }, 'invalid_redirect_uri', /without wildcards/],
    ['a wildcard in a post-logout redirect URI', { post_logout_redirect_uris: ['https://rp.example.test/*'] }, 'invalid_client_metadata', /without wildcards/],
    ['the account page\'s own client id', { client_id: 'tsunagi-account' }, 'invalid_client_metadata', /reserved/],
    ['the account page\'s own client id in other letters', { client_id: 'Tsunagi-Account' }, 'invalid_client_metadata', /reserved/],
  ])('refuses %s (CLI), storing nothing', async (_name, patch, error, message) => {
    const metadata: ClientMetadata = { client_id: `rule-${randomUUID()}`, ...webApp(), ...patch };
    const before = await storedMetadata(metadata.client_id as string);
    await expect(clients.add(metadata)).rejects.toMatchObject({ error, error_description: expect.stringMatching(message) });
    expect(await storedMetadata(metadata.client_id as string)).toEqual(before);
  });

  it.each([
    ['an http redirect URI to a host', { redirect_uris: ['http://rp.example.test/callback'] }, 'invalid_redirect_uri', /RFC 8252/],
    ['an http redirect URI to localhost (not a loopback IP literal)', { redirect_uris: ['http://localhost:8080/cb'], application_type: 'native' }, 'invalid_redirect_uri', /RFC 8252/],
    ['an http jwks_uri', { jwks_uri: 'http://rp.example.test/jwks', token_endpoint_auth_method: 'private_key_jwt' }, 'invalid_client_metadata', /jwks_uri must be an https URL/],
    ['an http sector_identifier_uri', { sector_identifier_uri: 'http://rp.example.test/sector' }, 'invalid_client_metadata', /sector_identifier_uri/],
    ['an http backchannel_logout_uri', { backchannel_logout_uri: 'http://rp.example.test/bcl' }, 'invalid_client_metadata', /backchannel_logout_uri/],
    ['an http logo_uri', { logo_uri: 'http://rp.example.test/logo.png' }, 'invalid_client_metadata', /logo_uri/],
    ['an http policy_uri', { policy_uri: 'http://rp.example.test/policy' }, 'invalid_client_metadata', /policy_uri/],
    ['an http tos_uri', { tos_uri: 'http://rp.example.test/tos' }, 'invalid_client_metadata', /tos_uri/],
    ['an http client_uri', { client_uri: 'http://rp.example.test/' }, 'invalid_client_metadata', /client_uri/],
  ])('refuses in production %s, storing nothing', async (_name, patch, error, message) => {
    const metadata: ClientMetadata = { client_id: `prod-${randomUUID()}`, ...webApp(), ...patch };
    await expect(productionClients.add(metadata)).rejects.toMatchObject({ error, error_description: expect.stringMatching(message) });
    expect(await storedMetadata(metadata.client_id as string)).toBeUndefined();
  });

  it('accepts in production a native app redirecting to http on a loopback IP literal, and https everywhere else', async () => {
    const added = await productionClients.add(webApp({
      application_type: 'native', token_endpoint_auth_method: 'none',
      redirect_uris: ['http://127.0.0.1:51004/callback', 'http://[::1]:51004/callback', 'com.example.app:/callback'],
      logo_uri: 'https://rp.example.test/logo.png', policy_uri: 'https://rp.example.test/policy',
    }));
    expect(await storedMetadata(added.client_id as string)).toMatchObject({ redirect_uris: expect.arrayContaining(['http://127.0.0.1:51004/callback']) });
  });

  it('lists stored clients that break a rule, with the rule, and not the ones that keep them', async () => {
    const good = await clients.add(webApp());
    const bad = `legacy-${randomUUID()}`;
    // Written before the rules existed (or by hand): nothing refused it.
    await db.pool.query(`INSERT INTO clients (client_id, metadata, source) VALUES ($1, $2, 'cli')`, [bad, {
      client_id: bad, redirect_uris: ['https://*.rp.example.test/cb'], grant_types: ['client_credentials'], response_types: [], token_endpoint_auth_method: 'none',
    }]);
    const findings = await clients.lint();
    expect(findings.find((f) => f.clientId === good.client_id)).toBeUndefined();
    const finding = findings.find((f) => f.clientId === bad);
    expect(finding?.violations.map((v) => v.rule).sort()).toEqual(['public-client-credentials', 'wildcard-uri']);
    await db.pool.query('DELETE FROM clients WHERE client_id = $1', [bad]);
  });
});
