import type { Database } from '../../src/db/database.js';
import { developmentMasterKeyring } from '../../src/secrets/master-key.js';
import { SIGNING_ALGS, SigningKeyStore, type KeySummary } from '../../src/oidc/keys.js';
import { openIsolatedDatabase } from './isolated-database.js';

// These tests look at the whole signing_keys table, so they get a database of their own.
let db: Database;
let keys: SigningKeyStore;
beforeAll(async () => {
  db = await openIsolatedDatabase();
  keys = new SigningKeyStore(db.pool, developmentMasterKeyring());
});
afterAll(async () => { await db.close(); });

const byState = (list: KeySummary[], state: KeySummary['state']) => list.filter((k) => k.state === state);
const kidsOf = (list: KeySummary[]) => list.map((k) => k.kid).sort();
const HOUR = 3600;

describe('SigningKeyStore', () => {
  // Runs first: the table starts empty.
  it('creates a current and a next key for RS256, ES256 and EdDSA, once, even when two starters race', async () => {
    expect(await keys.list()).toEqual([]);
    const created = await Promise.all([keys.ensureKeys(), keys.ensureKeys()]);
    expect(created[0]! + created[1]!).toBe(6);
    const list = await keys.list();
    for (const alg of SIGNING_ALGS) {
      expect(list.filter((k) => k.alg === alg).map((k) => k.state).sort()).toEqual(['current', 'next']);
    }
    expect(byState(list, 'current').every((k) => k.activatedAt instanceof Date)).toBe(true);
    expect(byState(list, 'next').every((k) => k.activatedAt === null)).toBe(true);
  });

  it('changes nothing when the keys already exist', async () => {
    const before = await keys.list();
    expect(await keys.ensureKeys()).toBe(0);
    expect(await keys.list()).toEqual(before);
  });

  it('loads current keys first, signing, and next keys only for verification', async () => {
    const { jwks } = await keys.load();
    const states = new Map((await keys.list()).map((k) => [k.kid, k.state]));
    expect(jwks.keys.map((k) => states.get(k.kid))).toEqual(['current', 'current', 'current', 'next', 'next', 'next']);
    expect(jwks.keys.slice(0, 3).map((k) => k.alg)).toEqual(['RS256', 'ES256', 'EdDSA']);
    for (const key of jwks.keys.slice(0, 3)) expect(key.key_ops).toBeUndefined();
    for (const key of jwks.keys.slice(3)) expect(key.key_ops).toEqual(['verify']);
    for (const key of jwks.keys) {
      expect(key.use).toBe('sig');
      expect(key.d).toEqual(expect.any(String));
    }
    expect(jwks.keys.map((k) => [k.alg, k.kty, k.crv])).toEqual(expect.arrayContaining([['RS256', 'RSA', undefined], ['ES256', 'EC', 'P-256'], ['EdDSA', 'OKP', 'Ed25519']]));
  });

  it('gives the same fingerprint as load()', async () => {
    expect(await keys.fingerprint()).toBe((await keys.load()).fingerprint);
    expect((await keys.load()).fingerprint).toMatch(/:current/);
  });

  describe('rotate', () => {
    const t0 = new Date();
    const t1 = new Date(t0.getTime() + 2 * HOUR * 1000);
    let firstCurrent: string[];
    let firstNext: string[];

    it('promotes next to current, retires current until the given time, and makes a new next key', async () => {
      const before = await keys.list();
      firstCurrent = kidsOf(byState(before, 'current'));
      firstNext = kidsOf(byState(before, 'next'));
      const result = await keys.rotate(HOUR, t0);
      expect(result.promoted.sort()).toEqual(firstNext);
      expect(result.retired.sort()).toEqual(firstCurrent);
      expect(result.deleted).toEqual([]);
      expect(result.created).toHaveLength(3);

      const after = await keys.list();
      expect(kidsOf(byState(after, 'current'))).toEqual(firstNext);
      const retired = byState(after, 'retired');
      expect(kidsOf(retired)).toEqual(firstCurrent);
      for (const k of retired) expect(k.retireUntil?.getTime()).toBe(t0.getTime() + HOUR * 1000);
      const next = byState(after, 'next');
      expect(kidsOf(next)).toEqual([...result.created].sort());
      expect(next.map((k) => k.alg).sort()).toEqual([...SIGNING_ALGS].sort());
    });

    it('publishes retired keys for verification until their time is up', async () => {
      const { jwks } = await keys.load(t0);
      const retiredKeys = jwks.keys.filter((k) => firstCurrent.includes(k.kid));
      expect(retiredKeys).toHaveLength(3);
      for (const k of retiredKeys) expect(k.key_ops).toEqual(['verify']);
      expect(jwks.keys.slice(0, 3).map((k) => k.kid).sort()).toEqual(firstNext);
      expect(jwks.keys.slice(-3).map((k) => k.kid).sort()).toEqual(firstCurrent);

      const later = await keys.load(new Date(t0.getTime() + (HOUR + 1) * 1000));
      expect(later.jwks.keys.some((k) => firstCurrent.includes(k.kid))).toBe(false);
    });

    it('agrees with load() on the fingerprint with retired keys present and after they lapse', async () => {
      const lapsed = new Date(t0.getTime() + (HOUR + 1) * 1000);
      expect(await keys.fingerprint(t0)).toBe((await keys.load(t0)).fingerprint);
      expect(await keys.fingerprint(lapsed)).toBe((await keys.load(lapsed)).fingerprint);
      expect(await keys.fingerprint(lapsed)).not.toBe(await keys.fingerprint(t0));
    });

    it('deletes retired keys past their time on a later rotation', async () => {
      const result = await keys.rotate(HOUR, t1);
      expect(result.deleted.sort()).toEqual(firstCurrent);
      expect(result.retired.sort()).toEqual(firstNext);
      const list = await keys.list();
      expect(list.some((k) => firstCurrent.includes(k.kid))).toBe(false);
      expect(kidsOf(byState(list, 'retired'))).toEqual(firstNext);
      expect(byState(list, 'current')).toHaveLength(3);
      expect(byState(list, 'next')).toHaveLength(3);
    });

    it('records each rotation as an audit event', async () => {
      const { rows } = await db.pool.query<{ data: { deleted: string[] } }>(`SELECT data FROM audit_events WHERE type = 'key_rotation' ORDER BY id`);
      expect(rows).toHaveLength(2);
      expect(rows[1]?.data.deleted.sort()).toEqual(firstCurrent);
    });
  });
});
