// Counts Postgres queries and Redis round trips per request. Run by bench/run.ts as its own process
// after the measured Tsunagi has stopped: it starts Tsunagi in this process (same database, Redis,
// port and issuer, so the tokens from the set-up stay valid), wraps the pg client and the Redis
// client to count, sends a few requests of each scenario to warm up, then N more one at a time,
// and prints `RESULT [RoundTripCount...]`.
//
// How a round trip is counted: bench/round-trip-counter.ts (test/e2e/round-trips.test.ts uses it too).
//
// argv[2]: JSON { target: Target, requests?: number }; env: as for the server.
import fs from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { loadConfig } from '../src/config.js';
import { startServer } from '../src/server.js';
import type { RoundTripCount } from './report.js';
import { installRoundTripCounter } from './round-trip-counter.js';
import { basicAuth, httpScenarios, REDIRECT_URI, SSO_SCENARIO, SSO_SCOPE, type Target } from './scenarios.js';

const counter = installRoundTripCounter();
const { counts, trace } = counter;

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
  // Key reloads poll the database every KEYS_RELOAD_SECONDS: keep them out of the counts.
  const config = loadConfig({ ...process.env, KEYS_RELOAD_SECONDS: '86400' });
  const server = await startServer(config);
  const results: RoundTripCount[] = [];
  try {
    const measure = async (scenario: string, once: () => Promise<void>) => {
      for (let i = 0; i < 5; i++) await once();
      trace.length = 0;
      counter.tracing = true;
      await once();
      counter.tracing = false;
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
