import { isCluster, type RedisConnection } from '../../db/redis.js';
import { refuseUnstorable, type Adapter, type AdapterPayload, type ConsumeConflictHandler } from './types.js';

// Each artifact is a hash { payload, consumed? } with the artifact's TTL (plus the grace of a model
// kept past expiry, types.ts). A grant keeps a list of the keys issued under it so revokeByGrantId
// can find them; uid and user code are lookup keys naming the artifact's id.
//
// Every command and every MULTI touches one key, so the same code serves one Redis, a Sentinel
// primary and a Redis Cluster (where keys in different hash slots cannot share a MULTI or a script,
// and these keys cannot share a slot: an artifact is found by its id alone, not by its grant). What a
// MULTI across keys used to make atomic is made safe by order instead: the grant's list and the
// lookup keys are written before the artifact, so a write cut short leaves at most a name that points
// at nothing (harmless: a lookup finds nothing, a revocation deletes nothing), never an artifact its
// grant's revocation would miss. Key names are the same as before Cluster support.
export class RedisAdapter implements Adapter {
  constructor(
    private readonly model: string,
    private readonly redis: RedisConnection,
    private readonly onConsumeConflict: ConsumeConflictHandler,
    private readonly prefix = 'tsunagi:oidc:',
    private readonly graceSeconds = 0,
  ) {}

  private key(id: string): string { return `${this.prefix}${this.model}:${id}`; }
  private grantKey(grantId: string): string { return `${this.prefix}grant:${grantId}`; }
  private uidKey(uid: string): string { return `${this.prefix}${this.model}:uid:${uid}`; }
  private userCodeKey(code: string): string { return `${this.prefix}${this.model}:user_code:${code}`; }

  async upsert(id: string, payload: AdapterPayload, lifetime: number): Promise<void> {
    const expiresIn = lifetime ? lifetime + this.graceSeconds : 0;
    refuseUnstorable(id, payload);
    const key = this.key(id);
    const lookup = expiresIn ? { EX: expiresIn } : {};
    const grantKey = payload.grantId ? this.grantKey(payload.grantId) : undefined;
    // The grant's list lives as long as its longest member (GT keeps the longer TTL; NX sets the first one).
    const addToGrant = (m: { rPush(k: string, v: string): unknown; expire(k: string, s: number, mode: 'NX' | 'GT'): unknown }, gk: string) => {
      m.rPush(gk, key);
      if (expiresIn) { m.expire(gk, expiresIn, 'NX'); m.expire(gk, expiresIn, 'GT'); }
    };
    if (!isCluster(this.redis)) {
      // One server (or Sentinel's primary): everything in one MULTI, one round trip, all or nothing.
      const all = this.redis.multi();
      if (grantKey) addToGrant(all, grantKey);
      if (payload.userCode) all.set(this.userCodeKey(payload.userCode), id, lookup);
      if (payload.uid) all.set(this.uidKey(payload.uid), id, lookup);
      all.del(key).hSet(key, { payload: JSON.stringify(payload) });
      if (expiresIn) all.expire(key, expiresIn);
      await all.exec();
      return;
    }
    // A Cluster keeps these keys on different nodes, so no MULTI spans them: the pointers (the grant's
    // list, the lookups) are written first, then the artifact. An interrupted write leaves at most a
    // pointer to nothing, never a token that revoking its grant would miss.
    const pointers: Array<Promise<unknown>> = [];
    if (grantKey) {
      const list = this.redis.multi();
      addToGrant(list, grantKey);
      pointers.push(list.exec());
    }
    if (payload.userCode) pointers.push(this.redis.set(this.userCodeKey(payload.userCode), id, lookup));
    if (payload.uid) pointers.push(this.redis.set(this.uidKey(payload.uid), id, lookup));
    await Promise.all(pointers);
    const artifact = this.redis.multi().del(key).hSet(key, { payload: JSON.stringify(payload) });
    if (expiresIn) artifact.expire(key, expiresIn);
    await artifact.exec();
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return fromHash(await this.redis.hGetAll(this.key(id)));
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.findByLookup(this.uidKey(uid));
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.findByLookup(this.userCodeKey(userCode));
  }

  // Two round trips: the artifact's key is another slot's in a Cluster. An artifact gone in between
  // is simply not found, as if the lookup had come a moment later.
  private async findByLookup(lookupKey: string): Promise<AdapterPayload | undefined> {
    const id = await this.redis.get(lookupKey);
    return id === null ? undefined : this.find(id);
  }

  // HSETNX is atomic: of two requests consuming the same code, exactly one sets the field.
  async consume(id: string): Promise<void> {
    const key = this.key(id);
    // Only an existing artifact can be consumed (HSETNX alone would create a key without a TTL).
    const won = await this.redis.consumeArtifact(key, Math.floor(Date.now() / 1000));
    if (won === 1) return;
    const payload = await this.redis.hGet(key, 'payload');
    const grantId = payload ? (JSON.parse(payload) as AdapterPayload).grantId : undefined;
    await this.onConsumeConflict(this.model, grantId);
  }

  async destroy(id: string): Promise<void> {
    await this.redis.del(this.key(id));
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    // The grant's list holds every model's keys; each model deletes its own, the list expires with them.
    const keys = await this.redis.lRange(this.grantKey(grantId), 0, -1);
    const mine = [...new Set(keys.filter((k) => k.startsWith(`${this.prefix}${this.model}:`)))];
    // One DEL per key: in a Cluster they are in different slots (node-redis pipelines them anyway).
    await Promise.all(mine.map((k) => this.redis.del(k)));
  }
}

function fromHash(h: Record<string, string>): AdapterPayload | undefined {
  if (!h.payload) return undefined;
  const payload = JSON.parse(h.payload) as AdapterPayload;
  return h.consumed ? { ...payload, consumed: Number(h.consumed) } : payload;
}
