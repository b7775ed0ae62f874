// Counts Postgres queries and Redis round trips per request. Run by bench/run.ts as its own process
// after the measured Tsunagi has stopped: it starts Tsunagi in this process (same database, Redis,
// port and issuer, so the tokens from the set-up stay valid), wraps the pg client and the Redis
// client to count, sends a few requests of each scenario to warm up, then N more one at a time,
// and prints `RESULT [RoundTripCount...]`.
//
// - Postgres: every pg.Client#query is one round trip (pg sends one query at a time per connection).
// - Redis: every command outside MULTI is one round trip (even when several are in flight at once,
//   which node-redis would write together); a MULTI ... EXEC block is one round trip with its commands.
//
// argv[2]: JSON { target: Target, requests?: number }; env: as for the server.
import fs from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import { createClient } from 'redis';
import { loadConfig } from '../src/config.js';
import { startServer } from '../src/server.js';
import type { RoundTripCount } from './report.js';
import { basicAuth, httpScenarios, REDIRECT_URI, SSO_SCENARIO, SSO_SCOPE, type Target } from './scenarios.js';

const counts = { pg: 0, redisTrips: 0, redisCommands: 0 };
/** What one request sent, by label; filled while `tracing` is on. */
const trace: string[] = [];
let tracing = false;

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
    if (tracing) {
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
    if (tracing) trace.push(`redis: ${redisLabel(args[0])}`);
    return send.apply(this, args);
  };
  for (const name of ['_executeMulti', '_executePipeline']) {
    const original = p[name];
    if (typeof original !== 'function') throw new Error(`node-redis changed: no ${name} to count`);
    p[name] = function countedBatch(this: unknown, ...args: unknown[]) {
      counts.redisTrips++;
      const commands = Array.isArray(args[0]) ? (args[0] as Array<{ args?: unknown }>) : [];
      counts.redisCommands += commands.length;
      if (tracing) {
        const models = [...new Set(commands.map((c) => redisLabel(c.args).split(' ')[1] ?? '?'))].join('+');
        trace.push(`redis: ${name === '_executeMulti' ? 'MULTI' : 'PIPELINE'} of ${commands.length} (${models})`);
      }
      return original.apply(this, args);
    };
  }
}

/** "pg: SELECT clients ×1, ..." in the order first seen. */
function summarize(labels: string[]): string[] {
  const seen = new Map<string, number>();
  for (const l of labels) seen.set(l, (seen.get(l) ?? 0) + 1);
  return [...seen].map(([l, n]) => (n > 1 ? `${l} ×${n}` : l));
}

async function expectOk(res: Response, what: string): Promise<void> {
  if (res.status < 200 || res.status >= 300) throw new Error(`${what}: ${res.status} ${(await res.text()).slice(0, 200)}`);
  await res.arrayBuffer();
}

async function ssoRoundTrip(t: Target): Promise<void> {
  const verifier = randomBytes(32).toString('base64url');
  const auth = new URL('/auth', t.issuer);
  auth.search = new URLSearchParams({
    client_id: t.clients.rs256.client_id, response_type: 'code', scope: SSO_SCOPE, redirect_uri: REDIRECT_URI,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
    state: randomBytes(12).toString('base64url'), nonce: randomBytes(12).toString('base64url'),
  }).toString();
  const a = await fetch(auth, { redirect: 'manual', headers: { cookie: t.cookie } });
  const code = new URL(a.headers.get('location') ?? 'x:/').searchParams.get('code');
  if (a.status !== 303 || !code) throw new Error(`sso authorize: ${a.status} ${a.headers.get('location') ?? ''}`);
  const res = await fetch(new URL('/token', t.issuer), {
    method: 'POST',
    headers: { authorization: basicAuth(t.clients.rs256), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier }),
  });
  await expectOk(res, 'sso token');
}

async function main() {
  const { target, requests = 50 } = JSON.parse(fs.readFileSync(process.argv[2] ?? '', 'utf8')) as { target: Target; requests?: number };
  countPostgres();
  countRedis();
  // Key reloads poll the database every KEYS_RELOAD_SECONDS: keep them out of the counts.
  const config = loadConfig({ ...process.env, KEYS_RELOAD_SECONDS: '86400' });
  const server = await startServer(config);
  const results: RoundTripCount[] = [];
  try {
    const measure = async (scenario: string, once: () => Promise<void>) => {
      for (let i = 0; i < 5; i++) await once();
      trace.length = 0;
      tracing = true;
      await once();
      tracing = false;
      const calls = summarize(trace);
      Object.assign(counts, { pg: 0, redisTrips: 0, redisCommands: 0 });
      for (let i = 0; i < requests; i++) await once();
      results.push({ scenario, requests, postgresQueries: counts.pg, redisRoundTrips: counts.redisTrips, redisCommands: counts.redisCommands, calls });
    };
    for (const s of httpScenarios(target)) {
      await measure(s.id, async () => {
        const res = await fetch(new URL(s.path, target.issuer), { method: s.method, headers: s.headers, ...(s.body === undefined ? {} : { body: s.body }) });
        await expectOk(res, s.id);
      });
    }
    await measure(SSO_SCENARIO.id, () => ssoRoundTrip(target));
  } finally {
    await server.close();
  }
  process.stdout.write(`RESULT ${JSON.stringify(results)}\n`);
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`round-trip count failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
