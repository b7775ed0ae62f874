// The load generator, run by bench/run.ts as its own process (so it never shares an event loop with a
// server). Reads a LoadSpec as JSON from argv[2], runs a warm-up and then the measured window, and
// prints one line `RESULT {Measurement as JSON}`.
//
// - `http`: one fixed request, driven by autocannon at a fixed number of connections.
// - `sso`: a full single-sign-on round trip per iteration, which autocannon cannot express honestly
//   (the second request needs the code from the first): each of `connections` loops sends
//   GET /auth with the session cookie, expects a 303 to the redirect URI carrying a code, then
//   POST /token with that code and a fresh PKCE verifier, and expects 200 with an ID token. The
//   latency recorded is the whole round trip; requests use one keep-alive agent with one socket
//   per loop, like autocannon's connections.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { measurementFrom, type Measurement } from './report.js';

export type LoadSpec =
  | {
    kind: 'http';
    url: string;
    method: 'GET' | 'POST';
    headers: Record<string, string>;
    body?: string;
    connections: number;
    warmupSeconds: number;
    durationSeconds: number;
  }
  | {
    kind: 'sso';
    issuer: string;
    clientId: string;
    clientSecret: string;
    redirectUri: string;
    cookie: string;
    scope: string;
    connections: number;
    warmupSeconds: number;
    durationSeconds: number;
  };

async function runAutocannon(spec: Extract<LoadSpec, { kind: 'http' }>): Promise<Measurement> {
  const options = {
    url: spec.url,
    method: spec.method,
    headers: spec.headers,
    ...(spec.body === undefined ? {} : { body: spec.body }),
    connections: spec.connections,
    timeout: 10,
  };
  if (spec.warmupSeconds > 0) await autocannon({ ...options, duration: spec.warmupSeconds });
  const r = await autocannon({ ...options, duration: spec.durationSeconds });
  const completed = r.requests.total;
  const errors = r.non2xx + r.errors;
  const statuses = Object.entries(r.statusCodeStats ?? {}).map(([code, s]) => `${code}×${s.count ?? 0}`).join(' ');
  return {
    completed,
    seconds: r.duration,
    perSecond: r.duration > 0 ? completed / r.duration : 0,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    errors,
    ...(errors ? { errorDetail: `statuses ${statuses}; socket errors ${r.errors} (timeouts ${r.timeouts})` } : {}),
  };
}

interface Answer { status: number; headers: http.IncomingHttpHeaders; body: string }

function send(agent: http.Agent, url: URL, method: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent, headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

async function runSso(spec: Extract<LoadSpec, { kind: 'sso' }>): Promise<Measurement> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: spec.connections });
  const basic = `Basic ${Buffer.from(`${encodeURIComponent(spec.clientId)}:${encodeURIComponent(spec.clientSecret)}`).toString('base64')}`;
  const tokenUrl = new URL('/token', spec.issuer);

  const problems = new Map<string, number>();
  const fail = (what: string) => { problems.set(what, (problems.get(what) ?? 0) + 1); };

  async function roundTrip(): Promise<boolean> {
    const verifier = randomBytes(32).toString('base64url');
    const auth = new URL('/auth', spec.issuer);
    auth.search = new URLSearchParams({
      client_id: spec.clientId,
      response_type: 'code',
      scope: spec.scope,
      redirect_uri: spec.redirectUri,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
      state: randomBytes(12).toString('base64url'),
      nonce: randomBytes(12).toString('base64url'),
    }).toString();
    const a = await send(agent, auth, 'GET', { cookie: spec.cookie });
    const location = a.headers.location;
    const code = a.status === 303 && location?.startsWith(spec.redirectUri) ? new URL(location).searchParams.get('code') : null;
    if (!code) { fail(`authorize ${a.status}${location ? ` -> ${location.slice(0, 80)}` : ''}`); return false; }
    const t = await send(agent, tokenUrl, 'POST', { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
      new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: spec.redirectUri, code_verifier: verifier }).toString());
    if (t.status !== 200 || !t.body.includes('"id_token"')) { fail(`token ${t.status} ${t.body.slice(0, 120)}`); return false; }
    return true;
  }

  async function phase(seconds: number, record: boolean) {
    const latencies: number[] = [];
    let ok = 0;
    let errors = 0;
    const started = performance.now();
    const until = started + seconds * 1000;
    await Promise.all(Array.from({ length: spec.connections }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        let success = false;
        try { success = await roundTrip(); } catch (err) { fail(`socket: ${(err as Error).message}`); }
        if (!record) continue;
        if (success) { ok++; latencies.push(performance.now() - t0); } else errors++;
      }
    }));
    return { latencies, ok, errors, seconds: (performance.now() - started) / 1000 };
  }

  if (spec.warmupSeconds > 0) await phase(spec.warmupSeconds, false);
  problems.clear();
  const m = await phase(spec.durationSeconds, true);
  agent.destroy();
  const detail = [...problems].map(([what, n]) => `${n}× ${what}`).join('; ');
  return measurementFrom(m.latencies, m.ok, m.seconds, m.errors, detail || undefined);
}

async function main() {
  const spec = JSON.parse(process.argv[2] ?? '') as LoadSpec;
  const result = spec.kind === 'http' ? await runAutocannon(spec) : await runSso(spec);
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`load generator failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
