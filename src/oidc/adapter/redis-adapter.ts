import type { RedisConnection } from '../../db/redis.js';
import { refuseUnstorable, type Adapter, type AdapterPayload, type ConsumeConflictHandler } from './types.js';

const CONSUME_SCRIPT = `if redis.call('exists', KEYS[1]) == 0 then return 0 end
return redis.call('hsetnx', KEYS[1], 'consumed', ARGV[1])`;

// A lookup key (uid, user code) and the artifact it names, read in one round trip (the device
// page finds a device code by its user code; sessions, found by uid, are in Postgres now, see
// LOSABLE_MODELS). The artifact's key is built
// inside the script from ARGV[1] (the model's key prefix), which a single Redis server allows (a
// Redis Cluster would not; Tsunagi's MULTIs across a grant's keys do not support Cluster either).
const FIND_BY_LOOKUP_SCRIPT = `local id = redis.call('get', KEYS[1])
if not id then return false end
return redis.call('hgetall', ARGV[1] .. id)`;

// Each artifact is a hash { payload, consumed? } with the artifact's TTL (plus the grace of a model
// kept past expiry, types.ts). A grant keeps a list of the keys issued under it so revokeByGrantId
// can find them; uid and user code are lookup keys.
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
    const multi = this.redis.multi().del(key).hSet(key, { payload: JSON.stringify(payload) });
    if (expiresIn) multi.expire(key, expiresIn);
    if (payload.grantId) {
      const gk = this.grantKey(payload.grantId);
      multi.rPush(gk, key);
      // The list lives as long as its longest member (GT keeps the longer TTL; NX sets the first one).
      if (expiresIn) { multi.expire(gk, expiresIn, 'NX'); multi.expire(gk, expiresIn, 'GT'); }
    }
    if (payload.userCode) multi.set(this.userCodeKey(payload.userCode), id, expiresIn ? { EX: expiresIn } : {});
    if (payload.uid) multi.set(this.uidKey(payload.uid), id, expiresIn ? { EX: expiresIn } : {});
    await multi.exec();
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

  private async findByLookup(lookupKey: string): Promise<AdapterPayload | undefined> {
    const reply = await this.redis.eval(FIND_BY_LOOKUP_SCRIPT, { keys: [lookupKey], arguments: [this.key('')] });
    if (!Array.isArray(reply)) return undefined; // no lookup key (Lua false -> nil reply)
    const h: Record<string, string> = {};
    for (let i = 0; i + 1 < reply.length; i += 2) h[String(reply[i])] = String(reply[i + 1]);
    return fromHash(h);
  }

  // HSETNX is atomic: of two requests consuming the same code, exactly one sets the field.
  async consume(id: string): Promise<void> {
    const key = this.key(id);
    // Only an existing artifact can be consumed (HSETNX alone would create a key without a TTL).
    const won = await this.redis.eval(CONSUME_SCRIPT, { keys: [key], arguments: [String(Math.floor(Date.now() / 1000))] });
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
    const mine = keys.filter((k) => k.startsWith(`${this.prefix}${this.model}:`));
    if (mine.length) await this.redis.del(mine);
  }
}

function fromHash(h: Record<string, string>): AdapterPayload | undefined {
  if (!h.payload) return undefined;
  const payload = JSON.parse(h.payload) as AdapterPayload;
  return h.consumed ? { ...payload, consumed: Number(h.consumed) } : payload;
}
