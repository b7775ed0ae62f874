import { randomUUID } from 'node:crypto';
import type { Database } from '../../src/db/database.js';
import { createAdapterFactory } from '../../src/oidc/adapter/index.js';
import { PostgresAdapter, sweepExpiredPayloads } from '../../src/oidc/adapter/postgres-adapter.js';
import type { Adapter } from '../../src/oidc/adapter/types.js';
import { openTestDatabase } from '../support/harness.js';
import { adapterContract } from './adapter-contract.js';

let db: Database;
let adapterFor: (model: string) => Adapter;
beforeAll(async () => {
  db = await openTestDatabase();
  adapterFor = createAdapterFactory(db.pool, undefined);
});
afterAll(async () => { await db.close(); });

describe('PostgresAdapter (no Redis configured)', () => {
  it('serves every model but Client from Postgres', () => {
    for (const model of ['AuthorizationCode', 'Session', 'Interaction', 'AccessToken', 'RefreshToken', 'Grant', 'DeviceCode']) {
      expect(adapterFor(model)).toBeInstanceOf(PostgresAdapter);
    }
    expect(adapterFor('Client')).not.toBeInstanceOf(PostgresAdapter);
    expect(adapterFor('Session')).toBe(adapterFor('Session'));
  });

  adapterContract(
    { code: 'AuthorizationCode', session: 'Session', userCode: 'DeviceCode', token: 'AccessToken' },
    () => ({
      adapterFor,
      adapterWithGrace: (graceSeconds) => createAdapterFactory(db.pool, undefined, undefined, { expiredGraceSeconds: graceSeconds }),
    }),
  );

  it('keeps an artifact stored without a lifetime', async () => {
    const id = randomUUID();
    await adapterFor('Grant').upsert(id, { jti: id, kind: 'Grant' }, 0);
    const { rows } = await db.pool.query('SELECT expires_at FROM oidc_payloads WHERE model = $1 AND id = $2', ['Grant', id]);
    expect(rows).toEqual([{ expires_at: null }]);
    expect(await adapterFor('Grant').find(id)).toEqual({ jti: id, kind: 'Grant' });
  });

  it('sweeps an expired device code only after its grace period', async () => {
    const recent = randomUUID();
    const old = randomUUID();
    await adapterFor('DeviceCode').upsert(recent, { jti: recent }, 60);
    await adapterFor('DeviceCode').upsert(old, { jti: old }, 60);
    // Backdated by hand: waiting out a grace period of an hour is not an option in a test.
    await db.pool.query(`UPDATE oidc_payloads SET expires_at = now() - interval '10 minutes' WHERE model = 'DeviceCode' AND id = $1`, [recent]);
    await db.pool.query(`UPDATE oidc_payloads SET expires_at = now() - interval '2 hours' WHERE model = 'DeviceCode' AND id = $1`, [old]);
    await sweepExpiredPayloads(db.pool, 3600);
    const { rows } = await db.pool.query<{ id: string }>(`SELECT id FROM oidc_payloads WHERE model = 'DeviceCode' AND id = ANY($1::text[])`, [[recent, old]]);
    expect(rows.map((r) => r.id)).toEqual([recent]);
  });

  it('keeps the same id apart between models', async () => {
    const id = randomUUID();
    await adapterFor('AccessToken').upsert(id, { jti: id, kind: 'AccessToken' }, 60);
    expect(await adapterFor('RefreshToken').find(id)).toBeUndefined();
  });

  it('sweeps expired artifacts and keeps live ones', async () => {
    const dead = randomUUID();
    const live = randomUUID();
    await adapterFor('Session').upsert(dead, { jti: dead }, 60);
    await adapterFor('Session').upsert(live, { jti: live }, 60);
    await db.pool.query(`UPDATE oidc_payloads SET expires_at = now() - interval '1 second' WHERE model = 'Session' AND id = $1`, [dead]);
    expect(await sweepExpiredPayloads(db.pool)).toBeGreaterThanOrEqual(1);
    const { rows } = await db.pool.query<{ id: string }>(`SELECT id FROM oidc_payloads WHERE model = 'Session' AND id = ANY($1::text[])`, [[dead, live]]);
    expect(rows.map((r) => r.id)).toEqual([live]);
  });
});

describe('refresh token reuse interval (PostgresAdapter)', () => {
  const REUSE_SECONDS = 30;
  let clockMs = Date.parse('2026-11-29T12:00:00Z');
  let reuseAdapterFor: (model: string) => Adapter;
  beforeAll(() => {
    reuseAdapterFor = createAdapterFactory(db.pool, undefined, undefined, { refreshTokenReuseSeconds: REUSE_SECONDS, now: () => new Date(clockMs) });
  });

  async function storedRefreshToken(): Promise<{ id: string; grantId: string }> {
    const id = randomUUID();
    const grantId = randomUUID();
    await reuseAdapterFor('Grant').upsert(grantId, { jti: grantId, kind: 'Grant' }, 3600);
    await reuseAdapterFor('RefreshToken').upsert(id, { jti: id, kind: 'RefreshToken', grantId }, 3600);
    return { id, grantId };
  }

  it('shows a consumed refresh token as unused, and consumes it again, until the interval is over', async () => {
    const start = clockMs;
    const { id, grantId } = await storedRefreshToken();
    const tokens = reuseAdapterFor('RefreshToken');
    await tokens.consume(id);
    clockMs = start + (REUSE_SECONDS - 1) * 1000;
    expect((await tokens.find(id))?.consumed).toBeUndefined();
    await expect(tokens.consume(id)).resolves.toBeUndefined();

    // Counted from the first consume, not the reuse.
    clockMs = start + REUSE_SECONDS * 1000;
    expect((await tokens.find(id))?.consumed).toBe(Math.floor(start / 1000));
    await expect(tokens.consume(id)).rejects.toMatchObject({ error: 'invalid_grant' });
    // The replay revoked the grant and what it issued.
    expect(await reuseAdapterFor('Grant').find(grantId)).toBeUndefined();
    expect(await tokens.find(id)).toBeUndefined();
  });

  it('lets all of 20 parallel consumes within the interval through, and keeps codes single-use', async () => {
    const { id, grantId } = await storedRefreshToken();
    const outcomes = await Promise.allSettled(Array.from({ length: 20 }, () => reuseAdapterFor('RefreshToken').consume(id)));
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(20);
    expect(await reuseAdapterFor('Grant').find(grantId)).toBeDefined();

    const code = randomUUID();
    await reuseAdapterFor('AuthorizationCode').upsert(code, { jti: code, kind: 'AuthorizationCode', grantId: randomUUID() }, 60);
    const codeOutcomes = await Promise.allSettled(Array.from({ length: 20 }, () => reuseAdapterFor('AuthorizationCode').consume(code)));
    expect(codeOutcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
  });
});
