import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type pg from 'pg';
import { getOrCreateSecret } from '../db/app-secrets.js';
import { isSealed, type MasterKeyring } from '../secrets/master-key.js';
import type { Adapter } from './adapter/types.js';

/** The stored form of a hashed client secret: this prefix, then the base64url HMAC. */
export const HASHED_SECRET_PREFIX = 'hmac-sha256:';

export const isHashedSecret = (value: unknown): value is string => typeof value === 'string' && value.startsWith(HASHED_SECRET_PREFIX);

// What makes oidc-provider use the client secret as key material (an HMAC or AES key), not only
// compare it: then the secret must stay recoverable, so it is sealed instead of hashed.
const SIGNING_ALG_FIELDS = ['id_token_signed_response_alg', 'request_object_signing_alg', 'token_endpoint_auth_signing_alg',
  'userinfo_signed_response_alg', 'introspection_signed_response_alg', 'authorization_signed_response_alg'];
const ENCRYPTION_ALG_FIELDS = ['id_token_encrypted_response_alg', 'request_object_encryption_alg', 'userinfo_encrypted_response_alg',
  'introspection_encrypted_response_alg', 'authorization_encrypted_response_alg'];

export function secretIsKeyMaterial(metadata: Record<string, unknown>): boolean {
  if (metadata.token_endpoint_auth_method === 'client_secret_jwt') return true;
  if (SIGNING_ALG_FIELDS.some((f) => typeof metadata[f] === 'string' && (metadata[f] as string).startsWith('HS'))) return true;
  return ENCRYPTION_ALG_FIELDS.some((f) => typeof metadata[f] === 'string' && /^(A|dir$)/.test(metadata[f] as string));
}

/**
 * Client secrets at rest. A secret only compared (client_secret_basic / client_secret_post) is kept
 * as an HMAC-SHA-256 under a key that is itself sealed with the master key: a dump gives neither the
 * secret nor a way to test guesses offline. A secret oidc-provider needs as key material
 * (client_secret_jwt, HS* signed responses) is sealed with the master key and opened when the client
 * is loaded. oidc-provider sees the hashed form as the client's `client_secret` and compares through
 * `verify` (installed on its Client model, src/oidc/provider-host.ts).
 */
export class ClientSecretVault {
  constructor(private readonly keyring: MasterKeyring, private readonly hashKey: Buffer) {}

  static async open(pool: pg.Pool, keyring: MasterKeyring): Promise<ClientSecretVault> {
    return new ClientSecretVault(keyring, Buffer.from(await getOrCreateSecret(pool, keyring, 'client-secret-hash-key'), 'base64url'));
  }

  private hash(clientId: string, secret: string): string {
    return HASHED_SECRET_PREFIX + createHmac('sha256', this.hashKey).update(clientId).update('\0').update(secret).digest('base64url');
  }

  private static context(clientId: string): string { return `clients:${clientId}:client_secret`; }

  /** The metadata as stored: a plain client_secret becomes hashed or sealed; stored forms stay as they are. */
  toStored<T extends Record<string, unknown>>(metadata: T, reseal = false): T {
    const secret = metadata.client_secret;
    const clientId = metadata.client_id;
    if (typeof secret !== 'string' || typeof clientId !== 'string' || isHashedSecret(secret)) return metadata;
    if (isSealed(secret)) {
      if (!reseal || !this.keyring.sealedWithOlderKey(secret)) return metadata;
      return { ...metadata, client_secret: this.keyring.seal(this.keyring.open(secret, ClientSecretVault.context(clientId)), ClientSecretVault.context(clientId)) };
    }
    return {
      ...metadata,
      client_secret: secretIsKeyMaterial(metadata) ? this.keyring.seal(secret, ClientSecretVault.context(clientId)) : this.hash(clientId, secret),
    };
  }

  /** The metadata oidc-provider gets: a sealed secret opened, a hashed one left hashed. */
  fromStored<T extends Record<string, unknown>>(metadata: T): T {
    const secret = metadata.client_secret;
    if (!isSealed(secret) || typeof metadata.client_id !== 'string') return metadata;
    return { ...metadata, client_secret: this.keyring.open(secret, ClientSecretVault.context(metadata.client_id)) };
  }

  /** Does `presented` match the client's secret in the form oidc-provider holds it (hashed, or plain when sealed at rest)? */
  verify(clientId: string, held: string, presented: string): boolean {
    const actual = isHashedSecret(held) ? this.hash(clientId, presented) : presented;
    // Digests of both: equal lengths for timingSafeEqual, whatever was presented.
    const digest = (value: string) => createHash('sha256').update(value).digest();
    return timingSafeEqual(digest(held), digest(actual));
  }
}

/**
 * oidc-provider's adapters with the Client model wrapped: what dynamic registration stores has its
 * secret hashed or sealed, and what oidc-provider loads has a sealed secret opened.
 */
export function withClientSecretVault(adapterFor: (model: string) => Adapter, vault: ClientSecretVault): (model: string) => Adapter {
  let clientAdapter: Adapter | undefined;
  return (model) => {
    if (model !== 'Client') return adapterFor(model);
    if (clientAdapter) return clientAdapter;
    const inner = adapterFor(model);
    clientAdapter = {
      upsert: (id, payload, expiresIn) => inner.upsert(id, vault.toStored({ ...payload, client_id: id }), expiresIn),
      async find(id) {
        const found = await inner.find(id);
        return found && vault.fromStored(found);
      },
      findByUid: (uid) => inner.findByUid(uid),
      findByUserCode: (userCode) => inner.findByUserCode(userCode),
      destroy: (id) => inner.destroy(id),
      consume: (id) => inner.consume(id),
      revokeByGrantId: (grantId) => inner.revokeByGrantId(grantId),
    };
    return clientAdapter;
  };
}
