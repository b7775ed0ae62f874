// The behaviour oidc-provider relies on from any adapter, run against Postgres and against Redis.
import { randomUUID } from 'node:crypto';
import { KEPT_PAST_EXPIRY_MODELS, type Adapter, type AdapterPayload } from '../../src/oidc/adapter/types.js';

export interface AdapterContractContext {
  /** The adapter factory under test (createAdapterFactory(pool, redis?)). */
  adapterFor: (model: string) => Adapter;
  /** The same stores, keeping expired device codes and the like findable for `graceSeconds` only. */
  adapterWithGrace: (graceSeconds: number) => (model: string) => Adapter;
}

/** Resolves once this process's clock reads `at` (ms): the stores run on this machine's clock too. */
async function clockReaches(at: number): Promise<void> {
  while (Date.now() < at) await new Promise((r) => setTimeout(r, Math.max(10, at - Date.now())));
}

const id = () => randomUUID().replace(/-/g, '');

export function adapterContract(models: { code: string; session: string; userCode: string; token: string }, ctx: () => AdapterContractContext): void {
  const artifact = (model: string, extra: AdapterPayload = {}): AdapterPayload => ({ jti: id(), kind: model, clientId: `c-${id()}`, ...extra });

  it('finds what it stored, by id', async () => {
    const a = ctx().adapterFor(models.code);
    const payload = artifact(models.code, { grantId: id(), accountId: randomUUID(), scope: 'openid email' });
    await a.upsert(payload.jti as string, payload, 60);
    expect(await a.find(payload.jti as string)).toEqual(payload);
    expect(await a.find(id())).toBeUndefined();
  });

  it('replaces the payload on a second upsert', async () => {
    const a = ctx().adapterFor(models.session);
    const key = id();
    await a.upsert(key, artifact(models.session, { uid: id(), accountId: 'first' }), 60);
    await a.upsert(key, artifact(models.session, { uid: id(), accountId: 'second' }), 60);
    expect((await a.find(key))?.accountId).toBe('second');
  });

  it('finds a session by uid', async () => {
    const a = ctx().adapterFor(models.session);
    const uid = id();
    const payload = artifact(models.session, { uid, accountId: randomUUID() });
    await a.upsert(payload.jti as string, payload, 60);
    expect(await a.findByUid(uid)).toEqual(payload);
    expect(await a.findByUid(id())).toBeUndefined();
  });

  it('finds a device code by user code', async () => {
    const a = ctx().adapterFor(models.userCode);
    const userCode = `UC-${id().slice(0, 8)}`;
    const payload = artifact(models.userCode, { userCode, grantId: id() });
    await a.upsert(payload.jti as string, payload, 60);
    expect(await a.findByUserCode(userCode)).toEqual(payload);
    expect(await a.findByUserCode('UC-none')).toBeUndefined();
  });

  it('forgets an artifact at its expiry, but finds an expired device code (by id and user code) until its grace period is over', async () => {
    const f = ctx().adapterFor;
    const shortGrace = ctx().adapterWithGrace(1);
    // An artifact forgotten at its expiry: the session role, unless that model is kept past expiry
    // (Redis plays it with Interaction, which is), then the access token.
    const forgottenModel = KEPT_PAST_EXPIRY_MODELS.has(models.session) ? models.token : models.session;
    const session = artifact(forgottenModel, { uid: id() });
    const device = artifact(models.userCode, { userCode: `UC-${id().slice(0, 8)}` });
    const deviceShortGrace = artifact(models.userCode, { userCode: `UC-${id().slice(0, 8)}` });
    // Real lifetimes of one second: the stores expire them by their own clocks, nothing is edited.
    await f(forgottenModel).upsert(session.jti as string, session, 1);
    await f(models.userCode).upsert(device.jti as string, device, 1);
    await shortGrace(models.userCode).upsert(deviceShortGrace.jti as string, deviceShortGrace, 1);
    const stored = Date.now();
    // Past the lifetime (1 s) and the short grace (1 s more) of everything stored above.
    await clockReaches(stored + 2_100);

    expect(await f(forgottenModel).find(session.jti as string)).toBeUndefined();
    expect(await f(forgottenModel).findByUid(session.uid as string)).toBeUndefined();
    // oidc-provider needs to see it expired to answer expired_token (RFC 8628 section 3.5).
    expect(await f(models.userCode).find(device.jti as string)).toEqual(device);
    expect(await f(models.userCode).findByUserCode(device.userCode as string)).toEqual(device);
    expect(await shortGrace(models.userCode).find(deviceShortGrace.jti as string)).toBeUndefined();
    expect(await shortGrace(models.userCode).findByUserCode(deviceShortGrace.userCode as string)).toBeUndefined();
  });

  it('deletes an artifact on destroy', async () => {
    const a = ctx().adapterFor(models.session);
    const payload = artifact(models.session, { uid: id() });
    await a.upsert(payload.jti as string, payload, 60);
    await a.destroy(payload.jti as string);
    expect(await a.find(payload.jti as string)).toBeUndefined();
    // The uid still names the destroyed artifact; the lookup must not bring it back.
    expect(await a.findByUid(payload.uid as string)).toBeUndefined();
  });

  it('reports a consumed device code found by its user code', async () => {
    const a = ctx().adapterFor(models.userCode);
    const userCode = `UC-${id().slice(0, 8)}`;
    const payload = artifact(models.userCode, { userCode, grantId: id() });
    await a.upsert(payload.jti as string, payload, 60);
    expect((await a.findByUserCode(userCode))?.consumed).toBeUndefined();
    await a.consume(payload.jti as string);
    const found = await a.findByUserCode(userCode);
    expect(typeof found?.consumed).toBe('number');
    expect(found).toEqual({ ...payload, consumed: found?.consumed });
  });

  it('marks a consumed code with the time it was consumed', async () => {
    const a = ctx().adapterFor(models.code);
    const payload = artifact(models.code, { grantId: id() });
    await a.upsert(payload.jti as string, payload, 60);
    expect((await a.find(payload.jti as string))?.consumed).toBeUndefined();
    await a.consume(payload.jti as string);
    const consumed = (await a.find(payload.jti as string))?.consumed as number;
    expect(typeof consumed).toBe('number');
    expect(Math.abs(consumed - Date.now() / 1000)).toBeLessThan(60);
  });

  it('lets exactly one of two concurrent consumes win, answers the other invalid_grant and revokes the grant', async () => {
    const f = ctx().adapterFor;
    const grantId = id();
    const otherGrantId = id();
    const code = artifact(models.code, { grantId });
    const access = artifact(models.token, { grantId });
    const refresh = artifact('RefreshToken', { grantId });
    const grant = artifact('Grant', { jti: grantId });
    const othersRefresh = artifact('RefreshToken', { grantId: otherGrantId });
    await f(models.code).upsert(code.jti as string, code, 60);
    await f(models.token).upsert(access.jti as string, access, 60);
    await f('RefreshToken').upsert(refresh.jti as string, refresh, 600);
    await f('Grant').upsert(grantId, grant, 600);
    await f('RefreshToken').upsert(othersRefresh.jti as string, othersRefresh, 600);

    const results = await Promise.allSettled([f(models.code).consume(code.jti as string), f(models.code).consume(code.jti as string)]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(rejected).toHaveLength(1);
    expect((rejected[0]?.reason as { error?: string }).error).toBe('invalid_grant');

    expect(await f(models.token).find(access.jti as string)).toBeUndefined();
    expect(await f('RefreshToken').find(refresh.jti as string)).toBeUndefined();
    expect(await f('Grant').find(grantId)).toBeUndefined();
    expect(await f(models.code).find(code.jti as string)).toBeUndefined();
    expect(await f('RefreshToken').find(othersRefresh.jti as string)).toEqual(othersRefresh);
  });

  it('refuses a code consumed earlier with invalid_grant', async () => {
    const a = ctx().adapterFor(models.code);
    const payload = artifact(models.code, { grantId: id() });
    await a.upsert(payload.jti as string, payload, 60);
    await a.consume(payload.jti as string);
    await expect(a.consume(payload.jti as string)).rejects.toMatchObject({ error: 'invalid_grant' });
  });

  it('revokes by grant id only that grant\'s artifacts of its own model', async () => {
    const f = ctx().adapterFor;
    const grantId = id();
    const mine = [artifact(models.token, { grantId }), artifact(models.token, { grantId })];
    const otherGrant = artifact(models.token, { grantId: id() });
    const sameGrantOtherModel = artifact(models.code, { grantId });
    for (const p of [...mine, otherGrant]) await f(models.token).upsert(p.jti as string, p, 60);
    await f(models.code).upsert(sameGrantOtherModel.jti as string, sameGrantOtherModel, 60);

    await f(models.token).revokeByGrantId(grantId);
    for (const p of mine) expect(await f(models.token).find(p.jti as string)).toBeUndefined();
    expect(await f(models.token).find(otherGrant.jti as string)).toEqual(otherGrant);
    expect(await f(models.code).find(sameGrantOtherModel.jti as string)).toEqual(sameGrantOtherModel);
  });
}
