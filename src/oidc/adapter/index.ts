import type pg from 'pg';
import { errors } from 'oidc-provider';
import type { RedisConnection } from '../../db/redis.js';
import { ClientAdapter } from './client-adapter.js';
import { PostgresAdapter } from './postgres-adapter.js';
import { RedisAdapter } from './redis-adapter.js';
import { EXPIRED_ARTIFACT_GRACE_SECONDS, SHORT_LIVED_MODELS, graceSecondsOf, type Adapter, type ConsumeConflictHandler } from './types.js';

const GRANT_ARTIFACT_MODELS = ['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest'];

/**
 * Routes each oidc-provider model to its store: clients to the clients table, short-lived artifacts
 * to Redis when configured, everything else to Postgres.
 */
export function createAdapterFactory(
  pool: pg.Pool,
  redis: RedisConnection | undefined,
  redisPrefix = 'tsunagi:oidc:',
  /** How long expired device codes, codes, refresh tokens and interactions stay findable (types.ts). */
  expiredGraceSeconds = EXPIRED_ARTIFACT_GRACE_SECONDS,
): (model: string) => Adapter {
  const cache = new Map<string, Adapter>();
  const adapterFor = (model: string): Adapter => {
    let adapter = cache.get(model);
    if (!adapter) {
      if (model === 'Client') adapter = new ClientAdapter(pool);
      else if (redis && SHORT_LIVED_MODELS.has(model)) adapter = new RedisAdapter(model, redis, onConsumeConflict, redisPrefix, graceSecondsOf(model, expiredGraceSeconds));
      else adapter = new PostgresAdapter(model, pool, onConsumeConflict, graceSecondsOf(model, expiredGraceSeconds));
      cache.set(model, adapter);
    }
    return adapter;
  };
  // A code or refresh token redeemed twice at once: the loser revokes what the grant issued
  // (RFC 6749 section 4.1.2 / RFC 9700 refresh token replay) and answers invalid_grant.
  const onConsumeConflict: ConsumeConflictHandler = async (model, grantId) => {
    if (grantId) {
      await Promise.all([...GRANT_ARTIFACT_MODELS.map((m) => adapterFor(m).revokeByGrantId(grantId)), adapterFor('Grant').destroy(grantId)]);
    }
    throw new errors.InvalidGrant(`${model === 'RefreshToken' ? 'refresh token' : 'grant'} already used`);
  };
  return adapterFor;
}
