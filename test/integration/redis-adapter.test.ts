import pg from 'pg';
import { createClient } from 'redis';
import type { Database } from '../../src/db/database.js';
import { openRedis, type RedisConnection } from '../../src/db/redis.js';
import { ClientAdapter } from '../../src/oidc/adapter/client-adapter.js';
import { createAdapterFactory } from '../../src/oidc/adapter/index.js';
import { PostgresAdapter } from '../../src/oidc/adapter/postgres-adapter.js';
import { RedisAdapter } from '../../src/oidc/adapter/redis-adapter.js';
import type { Adapter } from '../../src/oidc/adapter/types.js';
import { openTestDatabase } from '../support/harness.js';
import { adapterContract } from './adapter-contract.js';

const REDIS_URL = process.env.REDIS_URL;
if (!REDIS_URL) console.warn('REDIS_URL not set: Redis adapter/rate-limiter tests did NOT run');
const describeWithRedis = REDIS_URL ? describe : describe.skip;

describe('adapter routing with Redis configured', () => {
  it('serves what may be lost from Redis; clients, sessions, grants and refresh tokens from Postgres', async () => {
    // Routing alone touches neither store: unconnected clients are enough.
    const pool = new pg.Pool();
    const adapterFor = createAdapterFactory(pool, createClient());
    for (const model of ['AuthorizationCode', 'Interaction', 'AccessToken', 'DeviceCode', 'ReplayDetection', 'ClientCredentials', 'PushedAuthorizationRequest', 'BackchannelAuthenticationRequest']) {
      expect(adapterFor(model)).toBeInstanceOf(RedisAdapter);
    }
    for (const model of ['Session', 'RefreshToken', 'Grant']) expect(adapterFor(model)).toBeInstanceOf(PostgresAdapter);
    expect(adapterFor('Client')).toBeInstanceOf(ClientAdapter);
    await pool.end();
  });
});

describeWithRedis('RedisAdapter (short-lived models, with Redis configured)', () => {
  let db: Database;
  let redis: RedisConnection;
  let adapterFor: (model: string) => Adapter;
  beforeAll(async () => {
    db = await openTestDatabase();
    redis = await openRedis(REDIS_URL as string);
    adapterFor = createAdapterFactory(db.pool, redis);
  });
  afterAll(async () => {
    await redis?.close();
    await db?.close();
  });

  // Sessions are in Postgres (above); the uid lookup of the Redis adapter is checked on Interaction.
  adapterContract(
    { code: 'AuthorizationCode', session: 'Interaction', userCode: 'DeviceCode', token: 'AccessToken' },
    () => ({
      adapterFor,
      adapterWithGrace: (graceSeconds) => createAdapterFactory(db.pool, redis, 'tsunagi:oidc:', { expiredGraceSeconds: graceSeconds }),
    }),
  );

  it('gives every key it writes a lifetime, the grant list included', async () => {
    const grantId = `g-${Date.now()}-${Math.random().toString(36).slice(2)}`;
    const id = `c-${Math.random().toString(36).slice(2)}`;
    await adapterFor('AuthorizationCode').upsert(id, { jti: id, grantId, uid: `u-${id}` }, 120);
    await adapterFor('AccessToken').upsert(`a-${id}`, { jti: `a-${id}`, grantId }, 3600);
    expect(await redis.ttl(`tsunagi:oidc:AuthorizationCode:${id}`)).toBeGreaterThan(100);
    expect(await redis.ttl(`tsunagi:oidc:AuthorizationCode:uid:u-${id}`)).toBeGreaterThan(100);
    // The grant's list lives as long as its longest member.
    expect(await redis.ttl(`tsunagi:oidc:grant:${grantId}`)).toBeGreaterThan(3500);
  });
});
