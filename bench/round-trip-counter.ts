// Counts Postgres queries and Redis round trips made by this process, by patching the pg client and
// node-redis prototypes (so every pool and client, made before or after, is counted). Used by
// bench/round-trips.ts and test/e2e/round-trips.test.ts.
//
// - Postgres: every pg.Client#query is one round trip (pg sends one query at a time per connection).
// - Redis: every command outside MULTI is one round trip (even when several are in flight at once,
//   which node-redis would write together); a MULTI ... EXEC block is one round trip with its commands.
import pg from 'pg';
import { createClient } from 'redis';

export interface RoundTripCounter {
  counts: { pg: number; redisTrips: number; redisCommands: number };
  /** What was sent, by label ("pg: SELECT accounts", "redis: MULTI of 6 (AccessToken+grant)"), while `tracing` is on. */
  trace: string[];
  tracing: boolean;
  reset(): void;
}

let installed: RoundTripCounter | undefined;

/** Patches pg and node-redis once per process (module registry) and returns the one counter. */
export function installRoundTripCounter(): RoundTripCounter {
  if (installed) return installed;
  const counter: RoundTripCounter = {
    counts: { pg: 0, redisTrips: 0, redisCommands: 0 },
    trace: [],
    tracing: false,
    reset() { Object.assign(this.counts, { pg: 0, redisTrips: 0, redisCommands: 0 }); this.trace.length = 0; },
  };
  installed = counter;
  const { counts, trace } = counter;

  // "SELECT accounts", "UPSERT oidc_payloads:Grant": enough to tell which store a round trip serves.
  function sqlLabel(text: string, values: unknown): string {
    // The reads of src/oidc/adapter/related-prefetch.ts: an artifact with the session, grant and account
    // it names, or (for a token found in Redis) those three alone.
    if (/^\s*WITH p AS \(SELECT jsonb_build_object/.test(text)) return 'SELECT related session+grant+account';
    if (/^\s*WITH p AS/.test(text) && Array.isArray(values)) return `SELECT oidc_payloads:${String(values[0])}+related`;
    const verb = /^\s*(\w+)/.exec(text)?.[1]?.toUpperCase() ?? '?';
    const table = /\b(?:FROM|INTO|UPDATE)\s+(\w+)/i.exec(text)?.[1] ?? '?';
    const model = table === 'oidc_payloads' && Array.isArray(values) && typeof values[0] === 'string' ? `:${values[0]}` : '';
    return `${verb === 'INSERT' && /ON CONFLICT/i.test(text) ? 'UPSERT' : verb} ${table}${model}`;
  }

  // "HGETALL AccessToken": the command and the model its key belongs to.
  // A script shows as "EVAL get+hgetall Session": the commands it calls and the model of its first key.
  function redisLabel(args: unknown): string {
    if (!Array.isArray(args)) return '?';
    const command = String(args[0]).toUpperCase();
    const script = command === 'EVAL' && typeof args[1] === 'string' ? args[1] : undefined;
    const keyArg: unknown = args[script ? 3 : 1]; // EVAL script numkeys key1 …
    const key = typeof keyArg === 'string' ? keyArg : '';
    const model = /^(?:[^:]+:)*?oidc:([^:]+)/.exec(key)?.[1] ?? key.split(':').slice(0, 2).join(':');
    const calls = script ? [...script.matchAll(/redis\.call\('(\w+)'/g)].map((m) => m[1]).join('+') : '';
    return `${command} ${calls} ${model}`.replace(/\s+/g, ' ').trim();
  }

  function countPostgres() {
    const proto = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
    const original = proto.query;
    proto.query = function countedQuery(this: unknown, ...args: unknown[]) {
      counts.pg++;
      if (counter.tracing) {
        const [first, second] = args;
        const text = typeof first === 'string' ? first : (first as { text?: string } | undefined)?.text ?? '';
        const values = Array.isArray(second) ? second : (first as { values?: unknown } | undefined)?.values;
        trace.push(`pg: ${sqlLabel(text, values)}`);
      }
      return original.apply(this, args);
    };
  }

  function countRedis() {
    // The class that owns sendCommand/_executeMulti is shared by every client createClient makes.
    let proto: object | null = Object.getPrototypeOf(createClient());
    while (proto && !Object.prototype.hasOwnProperty.call(proto, 'sendCommand')) proto = Object.getPrototypeOf(proto);
    if (!proto) throw new Error('node-redis changed: no sendCommand to count');
    const p = proto as Record<string, (...args: unknown[]) => unknown>;
    const send = p.sendCommand as (...args: unknown[]) => unknown;
    p.sendCommand = function countedSend(this: unknown, ...args: unknown[]) {
      counts.redisTrips++;
      counts.redisCommands++;
      if (counter.tracing) trace.push(`redis: ${redisLabel(args[0])}`);
      return send.apply(this, args);
    };
    for (const name of ['_executeMulti', '_executePipeline']) {
      const original = p[name];
      if (typeof original !== 'function') throw new Error(`node-redis changed: no ${name} to count`);
      p[name] = function countedBatch(this: unknown, ...args: unknown[]) {
        counts.redisTrips++;
        const commands = Array.isArray(args[0]) ? (args[0] as Array<{ args?: unknown }>) : [];
        counts.redisCommands += commands.length;
        if (counter.tracing) {
          const models = [...new Set(commands.map((c) => redisLabel(c.args).split(' ')[1] ?? '?'))].join('+');
          trace.push(`redis: ${name === '_executeMulti' ? 'MULTI' : 'PIPELINE'} of ${commands.length} (${models})`);
        }
        return original.apply(this, args);
      };
    }
  }
  countPostgres();
  countRedis();
  return counter;
}
