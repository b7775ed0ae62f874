import type pg from 'pg';
import { errors } from 'oidc-provider';
import type { RedisConnection } from '../../db/redis.js';
import { ClientAdapter } from './client-adapter.js';
import { PostgresAdapter } from './postgres-adapter.js';
import { RedisAdapter } from './redis-adapter.js';
import { prefetchRelatedOf, TOKEN_MODELS } from './related-prefetch.js';
import { currentRequestScope } from './request-scope.js';
import { EXPIRED_ARTIFACT_GRACE_SECONDS, LOSABLE_MODELS, graceSecondsOf, type Adapter, type AdapterPayload, type ConsumeConflictHandler } from './types.js';

const GRANT_ARTIFACT_MODELS = ['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest'];

export interface AdapterFactoryOptions {
  /** How long a rotated refresh token may still be used (REFRESH_TOKEN_REUSE_SECONDS; 0: never). */
  refreshTokenReuseSeconds?: number;
  /** The clock of that interval (tests move it). */
  now?: () => Date;
  /** How long expired device codes, codes, refresh tokens and interactions stay findable (types.ts). */
  expiredGraceSeconds?: number;
}

/**
 * Routes each oidc-provider model to its store: clients to the clients table, artifacts that may be
 * lost to Redis when configured, everything else (sessions, grants, refresh tokens) to Postgres.
 */
export function createAdapterFactory(
  pool: pg.Pool, redis: RedisConnection | undefined, redisPrefix = 'tsunagi:oidc:', options: AdapterFactoryOptions = {},
): (model: string) => Adapter {
  const grace = options.expiredGraceSeconds ?? EXPIRED_ARTIFACT_GRACE_SECONDS;
  const cache = new Map<string, Adapter>();
  const adapterFor = (model: string): Adapter => {
    let adapter = cache.get(model);
    if (!adapter) {
      if (model === 'Client') adapter = new ClientAdapter(pool);
      else if (redis && LOSABLE_MODELS.has(model)) {
        adapter = TOKEN_MODELS.has(model)
          ? new RelatedReadingRedisAdapter(model, pool, redis, onConsumeConflict, redisPrefix, graceSecondsOf(model, grace))
          : new RedisAdapter(model, redis, onConsumeConflict, redisPrefix, graceSecondsOf(model, grace));
      }
      else {
        const reuseSeconds = model === 'RefreshToken' ? options.refreshTokenReuseSeconds : 0;
        adapter = new PostgresAdapter(model, pool, onConsumeConflict, { reuseSeconds, now: options.now, graceSeconds: graceSecondsOf(model, grace) });
      }
      if (ACCESS_TOKEN_MODELS.has(model)) adapter = notingFinds(adapter);
      else if (model === 'RefreshToken') adapter = skippingValuesFoundElsewhere(adapter);
      cache.set(model, adapter);
    }
    return adapter;
  };
  // A code redeemed twice, or a rotated refresh token used again after its reuse interval: the
  // loser revokes what the grant issued (RFC 6749 section 4.1.2 / RFC 9700 section 4.14) and
  // answers invalid_grant.
  const onConsumeConflict: ConsumeConflictHandler = async (model, grantId) => {
    if (grantId) {
      await Promise.all([...GRANT_ARTIFACT_MODELS.map((m) => adapterFor(m).revokeByGrantId(grantId)), adapterFor('Grant').destroy(grantId)]);
    }
    throw new errors.InvalidGrant(`${model === 'RefreshToken' ? 'refresh token' : 'grant'} already used`);
  };
  return adapterFor;
}

// oidc-provider's introspection and revocation, not told what kind of token they were given, look
// the value up as an access token, a client credentials token and a refresh token at once, and use
// the first that is found in that order. Token values are random (256 bits): one found as an access
// token is no refresh token, so the refresh token lookup need not ask Postgres. It waits for the
// other two of this request and asks only when neither found the value (a refresh token, or
// nothing). Told it is a refresh token (token_type_hint), oidc-provider looks that up first and alone.
const ACCESS_TOKEN_MODELS = new Set(['AccessToken', 'ClientCredentials']);

function notingFinds(adapter: Adapter): Adapter {
  const find = adapter.find.bind(adapter);
  adapter.find = (id: string) => {
    const found = find(id);
    currentRequestScope()?.noteTokenLookup(id, found.then((payload) => payload !== undefined, () => false));
    return found;
  };
  return adapter;
}

function skippingValuesFoundElsewhere(adapter: Adapter): Adapter {
  const find = adapter.find.bind(adapter);
  adapter.find = async (id: string) => {
    const scope = currentRequestScope();
    if (scope && await scope.foundAsOtherToken(id)) return undefined;
    return find(id);
  };
  return adapter;
}

/**
 * A token found in Redis (an access token at userinfo or introspection, a code at the token
 * endpoint) names the session, grant and account oidc-provider reads next from Postgres: one query
 * for all of them starts as soon as the token is found (related-prefetch.ts).
 */
class RelatedReadingRedisAdapter extends RedisAdapter {
  constructor(private readonly tokenModel: string, private readonly pool: pg.Pool, ...rest: ConstructorParameters<typeof RedisAdapter> extends [string, ...infer R] ? R : never) {
    super(tokenModel, ...rest);
  }

  override async find(id: string): Promise<AdapterPayload | undefined> { return this.withRelated(await super.find(id)); }
  override async findByUid(uid: string): Promise<AdapterPayload | undefined> { return this.withRelated(await super.findByUid(uid)); }
  override async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> { return this.withRelated(await super.findByUserCode(userCode)); }

  private withRelated(payload: AdapterPayload | undefined): AdapterPayload | undefined {
    const scope = currentRequestScope();
    if (payload && scope) prefetchRelatedOf(this.pool, scope, this.tokenModel, payload);
    return payload;
  }
}
