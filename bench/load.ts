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
// - `email-signin` / `google-signin`: a whole sign-in per iteration, through Tsunagi's HTML forms, by a
//   fresh cookie-keeping client (a new browser): the authorization request, the login page, the email
//   code (asked of bench/run.ts over IPC, which reads it from its SMTP sink) or the round trip through
//   the Google emulator (run.ts queues the emulated user over IPC), back to the redirect URI with a
//   code, and the code exchanged at /token for an ID token. Each iteration comes from its own client
//   address (X-Forwarded-For; the bench runs Tsunagi with TRUST_PROXY=1, as behind a load balancer),
//   and each email iteration uses an account of its own, so the per-address and per-IP send limits
//   stay on and are not what is measured.
import fs from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { Browser, csrfOf, formAction } from '../test/support/browserless.js';
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
  }
  | {
    kind: 'email-signin' | 'google-signin';
    issuer: string;
    clientId: string;
    clientSecret: string;
    redirectUri: string;
    scope: string;
    /** email-signin: addresses of existing accounts, one per iteration. */
    emails: string[];
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

  return runLoops(spec, roundTrip, problems, () => agent.destroy());
}

/** Runs `iteration` in `connections` loops: a warm-up, then the measured window. */
async function runLoops(
  spec: { connections: number; warmupSeconds: number; durationSeconds: number },
  iteration: () => Promise<boolean>, problems: Map<string, number>, done: () => void = () => undefined,
): Promise<Measurement> {
  const fail = (what: string) => { problems.set(what, (problems.get(what) ?? 0) + 1); };
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
        try { success = await iteration(); } catch (err) { fail(`thrown: ${(err as Error).message.slice(0, 160)}`); }
        if (!record) continue;
        if (success) { ok++; latencies.push(performance.now() - t0); } else errors++;
      }
    }));
    return { latencies, ok, errors, seconds: (performance.now() - started) / 1000 };
  }

  if (spec.warmupSeconds > 0) await phase(spec.warmupSeconds, false);
  problems.clear();
  const m = await phase(spec.durationSeconds, true);
  done();
  const detail = [...problems].map(([what, n]) => `${n}× ${what}`).join('; ');
  return measurementFrom(m.latencies, m.ok, m.seconds, m.errors, detail || undefined);
}

// ---------- full sign-ins through the HTML forms ----------

interface ParentAnswer { id: number; code?: string; error?: string }
const pending = new Map<number, (a: ParentAnswer) => void>();
let nextAsk = 0;
process.on('message', (m: ParentAnswer) => { pending.get(m.id)?.(m); pending.delete(m.id); });

/** Asks bench/run.ts for the code mailed to `email`, or to queue the next Google user. */
function askParent(request: { type: 'email-code'; email: string } | { type: 'google-user' }): Promise<ParentAnswer> {
  if (!process.send) throw new Error('the sign-in scenarios need an IPC channel to bench/run.ts');
  const id = nextAsk++;
  return new Promise((resolve) => {
    pending.set(id, resolve);
    process.send?.({ ...request, id });
  });
}

async function runSignIns(spec: Extract<LoadSpec, { kind: 'email-signin' | 'google-signin' }>): Promise<Measurement> {
  const problems = new Map<string, number>();
  const fail = (what: string) => { problems.set(what, (problems.get(what) ?? 0) + 1); return false; };
  const basic = `Basic ${Buffer.from(`${encodeURIComponent(spec.clientId)}:${encodeURIComponent(spec.clientSecret)}`).toString('base64')}`;
  const isCallback = (u: string) => u.startsWith(spec.redirectUri);
  const at = (html: string, contains: string) => new URL(formAction(html, contains), spec.issuer).href;
  let iterations = 0;
  let nextEmail = 0;

  async function signIn(): Promise<boolean> {
    const n = iterations++;
    // A client address of its own per sign-in (10.0.0.0/8 holds 16M), passed on as a proxy would.
    const browser = new Browser({ 'x-forwarded-for': `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}` });
    const verifier = randomBytes(32).toString('base64url');
    const auth = new URL('/auth', spec.issuer);
    auth.search = new URLSearchParams({
      client_id: spec.clientId, response_type: 'code', scope: spec.scope, redirect_uri: spec.redirectUri,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
      state: randomBytes(12).toString('base64url'), nonce: randomBytes(12).toString('base64url'),
    }).toString();
    let page = await browser.follow(auth.href, {}, isCallback);
    if (page.res.status !== 200) return fail(`login page ${page.res.status}`);
    if (spec.kind === 'email-signin') {
      const email = spec.emails[nextEmail++];
      if (!email) return fail('ran out of prepared accounts (raise the count in bench/run.ts)');
      if (!page.body.includes('name="email" type="email"')) return fail('no email field on the login page');
      page = await browser.follow(at(page.body, '/email'), { form: { _csrf: csrfOf(page.body), email } }, isCallback);
      if (page.res.status !== 200 || !page.body.includes('autocomplete="one-time-code"')) return fail(`after the email: ${page.res.status} ${page.url}`);
      const answer = await askParent({ type: 'email-code', email });
      if (!answer.code) return fail(`no code: ${answer.error ?? '?'}`);
      page = await browser.follow(at(page.body, '/code'), { form: { _csrf: csrfOf(page.body), code: answer.code } }, isCallback);
    } else {
      await askParent({ type: 'google-user' });
      page = await browser.follow(at(page.body, '/upstream/google'), { form: { _csrf: csrfOf(page.body) } }, isCallback);
    }
    if (!isCallback(page.url)) return fail(`did not come back to the client: ${page.res.status} ${page.url.replace(/[?].*/, '')}`);
    const code = new URL(page.url).searchParams.get('code');
    if (!code) return fail(`no code at the redirect URI: ${page.url.replace(/[?].*/, '')}`);
    const res = await fetch(new URL('/token', spec.issuer), {
      method: 'POST',
      headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: spec.redirectUri, code_verifier: verifier }),
    });
    const body = await res.text();
    if (res.status !== 200 || !body.includes('"id_token"')) return fail(`token ${res.status} ${body.slice(0, 120)}`);
    return true;
  }

  return runLoops(spec, signIn, problems);
}

async function main() {
  const spec = JSON.parse(fs.readFileSync(process.argv[2] ?? '', 'utf8')) as LoadSpec;
  const result = spec.kind === 'http' ? await runAutocannon(spec) : spec.kind === 'sso' ? await runSso(spec) : await runSignIns(spec);
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`load generator failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
