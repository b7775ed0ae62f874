// `npm run bench`: Tsunagi against a bare oidc-provider on this machine. See the README's Benchmarks
// section. Every server and the load generator run as separate processes; all traffic stays on
// 127.0.0.1. Tsunagi and the bare provider run as production runs them (Dockerfile): compiled
// JavaScript (`npm run build` -> dist/, the bench's own servers -> dist/bench/) under plain `node`,
// without tsx; this script compiles both first. The load generator and the round-trip counter are
// bench tooling and run through tsx.
//
// env: DATABASE_URL, REDIS_URL (otherwise the embedded database in a fresh temporary folder),
//      BENCH_WARMUP (s, 5), BENCH_DURATION (s, 10), BENCH_CONNECTIONS (32),
//      BENCH_ONLY (comma-separated scenario ids; also skips scaling and round trips unless named),
//      BENCH_SCALING=0, BENCH_ROUND_TRIPS=0 to skip those parts,
//      BENCH_CPU_PROF=dir to write a V8 CPU profile of the measured Tsunagi process there,
//      BENCH_NODE (the node binary the servers run on; default: this one. The image runs Node 24: see
//      the README's Benchmarks section),
//      BENCH_NODE_FLAGS (node flags for the measured Tsunagi process, e.g. --trace-gc; its log is
//      $TMPDIR/tsunagi-bench-tsunagi.log),
//      BENCH_SIGNIN_ACCOUNTS (accounts prepared for the email-code sign-in, one per iteration; 300 per
//      second of warm-up + measurement unless given; a run that uses them all up reports it as errors).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createClient } from 'redis';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { parseEmailAddress } from '../src/accounts/email-address.js';
import { withTransaction } from '../src/db/database.js';
import { createServices } from '../src/services.js';
import { signInWithEmail } from '../test/e2e/support.js';
import { FakeGoogle } from '../test/fakes/google.js';
import { codeFrom, SmtpSink } from '../test/fakes/smtp-sink.js';
import { Browser, csrfOf, formAction } from '../test/support/browserless.js';
import type { LoadSpec } from './load.js';
import {
  checkTargets, renderMarkdown, type BenchResult, type MachineInfo, type Measurement, type RoundTripCount, type ScalingResult, type ScenarioResult,
} from './report.js';
import {
  basicAuth, clientMetadata, CLIENT_ID_PREFIX, httpScenarios, REDIRECT_URI, SCENARIO_ORDER, SIGN_IN_SCENARIOS, SSO_SCENARIO, SSO_SCOPE,
  type BenchClient, type BenchClients, type Target,
} from './scenarios.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS = path.join(ROOT, 'bench', 'results');

const intEnv = (name: string, fallback: number) => {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number`);
  return v;
};
const settings = {
  warmupSeconds: intEnv('BENCH_WARMUP', 5),
  durationSeconds: intEnv('BENCH_DURATION', 10),
  connections: intEnv('BENCH_CONNECTIONS', 32),
};
// The servers run on what the container image runs where that is given (BENCH_NODE); the load
// generator and this script on this node.
const SERVER_NODE = process.env.BENCH_NODE || process.execPath;
/**
 * The memory settings the container image gives Tsunagi (NODE_OPTIONS, MALLOC_ARENA_MAX in the
 * Dockerfile's runtime stage), so the bench measures what production runs.
 */
function imageRuntimeEnv(): Record<string, string> {
  const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  const runtime = dockerfile.slice(dockerfile.search(/^FROM\s+\S+\s+AS\s+runtime\s*$/im)).replace(/\\\n/g, ' ');
  const env: Record<string, string> = {};
  for (const line of runtime.split('\n')) {
    const m = /^ENV\s+(.*)$/.exec(line.trim());
    if (!m?.[1]) continue;
    for (const pair of m[1].trim().split(/\s+/)) {
      const [key, ...value] = pair.split('=');
      if (key === 'NODE_OPTIONS' || key === 'MALLOC_ARENA_MAX') env[key] = value.join('=');
    }
  }
  return env;
}
const IMAGE_ENV = imageRuntimeEnv();

const only = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',').map((s) => s.trim())) : undefined;
const databaseUrl = process.env.DATABASE_URL || undefined;
const redisUrl = process.env.REDIS_URL || undefined;

const log = (line: string) => process.stderr.write(`${line}\n`);

// ---------- processes ----------

interface Proc { name: string; child: ChildProcess; logFile: string; tail: string[] }
const running = new Set<Proc>();

/** Starts a compiled server (a .js file under dist/) with plain node, as the Dockerfile does. */
function start(name: string, args: string[], env: NodeJS.ProcessEnv): Proc {
  const logFile = path.join(os.tmpdir(), `tsunagi-bench-${name}.log`);
  const out = fs.createWriteStream(logFile);
  const child = spawn(SERVER_NODE, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const proc: Proc = { name, child, logFile, tail: [] };
  const keep = (chunk: Buffer) => {
    out.write(chunk);
    proc.tail.push(...chunk.toString().split('\n').filter(Boolean));
    proc.tail.splice(0, Math.max(0, proc.tail.length - 20));
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  child.once('exit', () => { running.delete(proc); out.end(); });
  running.add(proc);
  return proc;
}

async function stop(proc: Proc): Promise<void> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.child.once('exit', () => resolve()));
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

function stopAllNow() {
  for (const p of running) p.child.kill('SIGKILL');
}
process.once('SIGINT', () => { stopAllNow(); process.exit(130); });
process.once('SIGTERM', () => { stopAllNow(); process.exit(143); });

async function waitReady(proc: Proc, url: string, timeoutMs = 90_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (proc.child.exitCode !== null) throw new Error(`${proc.name} exited (${proc.child.exitCode}) before it was ready:\n${proc.tail.join('\n')}`);
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.ok) return;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${proc.name} was not ready within ${timeoutMs / 1000}s (log: ${proc.logFile})`);
}

/** Runs a bench script as its own process and returns what it printed after `RESULT `. */
function runScript<T>(script: string, arg: unknown, env: NodeJS.ProcessEnv = process.env, onMessage?: (m: unknown) => Promise<unknown>): Promise<T> {
  return new Promise((resolve, reject) => {
    // The argument goes through a file: a spec with thousands of prepared accounts is larger than
    // the kernel allows for a command line (spawn E2BIG).
    const argFile = path.join(os.tmpdir(), `tsunagi-bench-arg-${process.pid}-${randomBytes(6).toString('hex')}.json`);
    fs.writeFileSync(argFile, JSON.stringify(arg));
    const child = spawn(process.execPath, ['--import', 'tsx', script, argFile], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    child.once('exit', () => fs.rmSync(argFile, { force: true }));
    if (onMessage) {
      child.on('message', (m) => {
        onMessage(m).then((answer) => { if (child.connected) child.send(answer as object); }, (err: unknown) => log(`IPC answer failed: ${String(err)}`));
      });
    }
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr?.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.once('exit', (code) => {
      const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
      if (code === 0 && line) resolve(JSON.parse(line.slice('RESULT '.length)) as T);
      else reject(new Error(`${script} exited ${code}: ${stderr.slice(-2000)}`));
    });
  });
}

function peakRssMb(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

// ---------- set-up: clients, a signed-in session, tokens ----------

const newClient = (name: string): BenchClient => ({ client_id: `${CLIENT_ID_PREFIX}${name}`, client_secret: randomBytes(32).toString('base64url') });

async function registerInTsunagi(env: NodeJS.ProcessEnv, clients: BenchClients, signInEmails: string[]): Promise<void> {
  const services = await createServices(loadConfig(env), createLogger('warn'));
  try {
    // Earlier runs' clients go, with everything issued to them.
    for (const c of await services.clients.list()) {
      if (c.clientId.startsWith(CLIENT_ID_PREFIX)) await services.clients.remove(c.clientId);
    }
    for (const m of clientMetadata(clients)) await services.clients.add(m);
    // The accounts the email-code sign-in scenario signs in to, one per iteration (the per-address
    // send limit allows 5 codes per 15 minutes, so an address cannot be reused within a run).
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < signInEmails.length) {
        const email = parseEmailAddress(signInEmails[next++]);
        if (!email) throw new Error('bad bench email');
        await withTransaction(services.db.pool, (tx) => services.accounts.createAccountWithVerifiedEmail(tx, email));
      }
    }));
  } finally {
    await services.close();
  }
}

/** Signs each emulated Google user up once through the pages (confirmation, no passkey), so later sign-ins are linked. */
async function signUpGoogleUsers(issuer: string, client: BenchClient, google: FakeGoogle, subs: string[]): Promise<void> {
  const isCallback = (u: string) => u.startsWith(REDIRECT_URI);
  for (const sub of subs) {
    google.nextUser({ sub, email: `g${sub}@gmail.test`, email_verified: true, name: `Bench ${sub}` });
    const browser = new Browser();
    const login = await browser.follow(authorizeUrl(issuer, client, 'openid email').url.href, {}, isCallback);
    const at = (html: string, contains: string) => new URL(formAction(html, contains), issuer).href;
    let page = await browser.follow(at(login.body, '/upstream/google'), { form: { _csrf: csrfOf(login.body) } }, isCallback);
    if (!page.url.endsWith('/upstream-signup')) throw new Error(`Google sign-up of ${sub} did not reach the confirmation (${page.res.status} at ${page.url})`);
    page = await browser.follow(at(page.body, '/upstream-signup'), { form: { _csrf: csrfOf(page.body) } }, isCallback);
    if (page.body.includes('/passkey/register/options')) {
      const skip = /<a class="button secondary" href="([^"]+)"/.exec(page.body)?.[1];
      if (!skip) throw new Error('the passkey offer has no way to continue');
      page = await browser.follow(new URL(skip.replace(/&amp;/g, '&'), issuer).href, {}, isCallback);
    }
    if (!isCallback(page.url)) throw new Error(`Google sign-up of ${sub} ended at ${page.url} (${page.res.status})`);
  }
}

function authorizeUrl(issuer: string, client: BenchClient, scope: string) {
  const verifier = randomBytes(32).toString('base64url');
  const url = new URL('/auth', issuer);
  url.search = new URLSearchParams({
    client_id: client.client_id, response_type: 'code', scope, redirect_uri: REDIRECT_URI,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
    state: randomBytes(12).toString('base64url'), nonce: randomBytes(12).toString('base64url'),
  }).toString();
  return { url, verifier };
}

interface TokenResponse { access_token: string; refresh_token?: string; id_token?: string }

async function tokenRequest(issuer: string, client: BenchClient, params: Record<string, string>): Promise<TokenResponse> {
  const res = await fetch(new URL('/token', issuer), {
    method: 'POST',
    headers: { authorization: basicAuth(client), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(params),
  });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`token endpoint of ${issuer}: ${res.status} ${body}`);
  return JSON.parse(body) as TokenResponse;
}

function idTokenAlg(idToken: string | undefined): string | undefined {
  if (!idToken) return undefined;
  return (JSON.parse(Buffer.from(idToken.split('.')[0] ?? '', 'base64url').toString()) as { alg?: string }).alg;
}

/**
 * Signs in once (`firstSignIn` drives whatever login the server has), then gets the ES256 client a code
 * on the same session, exchanges both codes, and checks that the refresh tokens do not rotate, so one
 * refresh token per client can be sent for the whole run.
 */
async function obtainTokens(
  name: Target['name'], issuer: string, clients: BenchClients,
  firstSignIn: (browser: Browser, authUrl: URL) => Promise<URL>,
): Promise<Target> {
  const browser = new Browser();
  const scope = 'openid email offline_access';
  const rs = authorizeUrl(issuer, clients.rs256, scope);
  const rsCallback = await firstSignIn(browser, rs.url);
  const codeOf = (u: URL) => {
    const code = u.searchParams.get('code');
    if (!code) throw new Error(`${name}: no code in ${u.href}`);
    return code;
  };
  const rsTokens = await tokenRequest(issuer, clients.rs256, { grant_type: 'authorization_code', code: codeOf(rsCallback), redirect_uri: REDIRECT_URI, code_verifier: rs.verifier });

  const es = authorizeUrl(issuer, clients.es256, scope);
  const page = await browser.follow(es.url.href, {}, (u) => u.startsWith(REDIRECT_URI));
  if (!page.url.startsWith(REDIRECT_URI)) throw new Error(`${name}: SSO for the ES256 client did not come straight back (${page.res.status} at ${page.url})`);
  const esTokens = await tokenRequest(issuer, clients.es256, { grant_type: 'authorization_code', code: codeOf(new URL(page.url)), redirect_uri: REDIRECT_URI, code_verifier: es.verifier });

  for (const [client, tokens, alg] of [[clients.rs256, rsTokens, 'RS256'], [clients.es256, esTokens, 'ES256']] as const) {
    if (!tokens.refresh_token) throw new Error(`${name}: no refresh token for ${client.client_id}`);
    if (idTokenAlg(tokens.id_token) !== alg) throw new Error(`${name}: ${client.client_id} got an ID token signed with ${idTokenAlg(tokens.id_token)}, not ${alg}`);
    for (let i = 0; i < 2; i++) {
      const again = await tokenRequest(issuer, client, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
      if (again.refresh_token && again.refresh_token !== tokens.refresh_token) {
        throw new Error(`${name}: refresh tokens of ${client.client_id} rotate; the refresh scenarios need one reusable token`);
      }
      if (idTokenAlg(again.id_token) !== alg) throw new Error(`${name}: refresh for ${client.client_id} gave no ${alg} ID token`);
    }
  }
  return {
    name, issuer, clients,
    refreshTokens: { rs256: rsTokens.refresh_token as string, es256: esTokens.refresh_token as string },
    accessToken: rsTokens.access_token,
    cookie: browser.jar.header(),
  };
}

// ---------- measuring ----------

function fmt(m: Measurement): string {
  const e = m.errors ? `  ERRORS ${m.errors}: ${m.errorDetail ?? ''}` : '';
  return `${m.perSecond.toFixed(0).padStart(7)}/s  p50 ${m.p50Ms.toFixed(1).padStart(6)} ms  p99 ${m.p99Ms.toFixed(1).padStart(6)} ms${e}`;
}

interface SignInSupport { sink: SmtpSink; google: FakeGoogle; googleSubs: string[]; emails: string[] }

async function measure(target: Target, scenarioId: string, signIns?: SignInSupport): Promise<Measurement> {
  const common = { connections: settings.connections, warmupSeconds: settings.warmupSeconds, durationSeconds: settings.durationSeconds };
  let spec: LoadSpec;
  let onMessage: ((m: unknown) => Promise<unknown>) | undefined;
  if (scenarioId === 'email-signin' || scenarioId === 'google-signin') {
    if (!signIns) throw new Error(`${scenarioId} needs the SMTP sink and the Google emulator`);
    spec = {
      kind: scenarioId, issuer: target.issuer, clientId: target.clients.rs256.client_id, clientSecret: target.clients.rs256.client_secret,
      redirectUri: REDIRECT_URI, scope: SSO_SCOPE, emails: scenarioId === 'email-signin' ? signIns.emails : [], ...common,
    };
    let nextUser = 0;
    onMessage = async (raw) => {
      const m = raw as { id: number; type: string; email?: string };
      if (m.type === 'google-user') {
        const sub = signIns.googleSubs[nextUser++ % signIns.googleSubs.length] as string;
        signIns.google.nextUser({ sub, email: `g${sub}@gmail.test`, email_verified: true, name: `Bench ${sub}` });
        return { id: m.id };
      }
      try {
        return { id: m.id, code: codeFrom(await signIns.sink.nextMailTo(m.email ?? '')) };
      } catch (err) {
        return { id: m.id, error: (err as Error).message };
      }
    };
  } else if (scenarioId === SSO_SCENARIO.id) {
    spec = { kind: 'sso', issuer: target.issuer, clientId: target.clients.rs256.client_id, clientSecret: target.clients.rs256.client_secret, redirectUri: REDIRECT_URI, cookie: target.cookie, scope: SSO_SCOPE, ...common };
  } else {
    const s = httpScenarios(target).find((x) => x.id === scenarioId);
    if (!s) throw new Error(`unknown scenario ${scenarioId}`);
    spec = { kind: 'http', url: new URL(s.path, target.issuer).href, method: s.method, headers: s.headers, ...(s.body === undefined ? {} : { body: s.body }), ...common };
  }
  const m = await runScript<Measurement>('bench/load.ts', spec, process.env, onMessage);
  log(`  ${scenarioId.padEnd(20)} ${target.name.padEnd(8)} ${fmt(m)}`);
  return m;
}

async function machineInfo(): Promise<MachineInfo> {
  const cpu = /model name\s*:\s*(.+)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  let backends = 'embedded PGlite (one connection)';
  if (databaseUrl) {
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
    await client.end();
    backends = `PostgreSQL ${rows[0]?.server_version ?? '?'}`;
  }
  if (redisUrl) {
    const redis = createClient({ url: redisUrl });
    await redis.connect();
    const info = await redis.info('server');
    await redis.quit();
    backends += ` + Redis ${/redis_version:(\S+)/.exec(info)?.[1] ?? '?'}`;
  } else {
    backends += ', no Redis';
  }
  return {
    nproc: Number(execFileSync('nproc').toString().trim()),
    cpu,
    node: execFileSync(SERVER_NODE, ['--version']).toString().trim(),
    date: new Date().toISOString(),
    loadAverage: os.loadavg(),
    backends,
  };
}

// ---------- the run ----------

// What the servers run: the compiled build, as in the container image.
const COMPILED = { main: 'dist/main.js', cli: 'dist/cli/main.js', bare: 'dist/bench/bare-provider.js', cluster: 'dist/bench/cluster.js' };

/** Compiles src/ (npm run build) and the bench's servers, so what is measured is the current code. */
function build(): void {
  log('compiling: npm run build (src -> dist/) and tsconfig.bench.json (bench servers -> dist/bench/)');
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  for (const project of ['tsconfig.build.json', 'tsconfig.bench.json']) {
    execFileSync(process.execPath, [tsc, '-p', project], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  }
  for (const file of Object.values(COMPILED)) {
    if (!fs.existsSync(path.join(ROOT, file))) throw new Error(`the build did not produce ${file}`);
  }
}

async function main(): Promise<void> {
  build();
  const machine = await machineInfo();
  log(`Tsunagi benchmark: ${machine.backends}; ${settings.connections} connections, ${settings.warmupSeconds}s warm-up + ${settings.durationSeconds}s per scenario`);
  const wanted = (id: string) => !only || only.has(id);
  const notes: string[] = [
    'Both servers run as the container image runs Tsunagi: compiled JavaScript with plain `node` (Tsunagi: `dist/main.js` from `npm run build`; the bare provider: `dist/bench/bare-provider.js`), not through tsx. Tsunagi runs with NODE_ENV=development only because its issuer is plain http on 127.0.0.1, which production refuses.',
    `Tsunagi runs with the image's memory settings (Dockerfile): ${Object.entries(IMAGE_ENV).map(([k, v]) => `${k}=${v}`).join(', ') || 'none found'}; the bare provider with Node's defaults. The servers ran on Node ${machine.node}${process.env.BENCH_NODE ? ' (BENCH_NODE)' : ''}; the image runs Node 24.`,
    'Client credentials with a JWT access token: the client asks for resource=https://api.example.com/ (one of its allowed_resources) and gets an RS256 JWT; the bare provider has the same resourceIndicators configuration.',
    'The bare provider keeps every artifact in a Map in its own memory; Tsunagi keeps codes and access tokens in Redis (or Postgres without Redis) and sessions, grants and refresh tokens in Postgres. Both sign with the same algorithms and publish a current and a next key per algorithm.',
    'Refresh tokens of these confidential clients do not rotate (checked during set-up), so each refresh scenario sends one refresh token throughout.',
    'The SSO round trip is a custom loop (bench/load.ts): per iteration GET /auth with the session cookie → 303 with a code → POST /token with a fresh PKCE verifier → 200 with an ID token; its latency is the whole round trip. All loops share one session.',
    'Sign-in scenarios (Tsunagi only; bench/load.ts): each iteration is a new cookie-keeping client that walks the real pages over HTTP and ends with the code exchanged for an ID token. Email code: GET /auth → login page → POST the address of an existing account → code page; the code is read from the SMTP sink that Tsunagi mails to (nodemailer over SMTP on loopback) → POST the code → redirect URI → POST /token. Google: GET /auth → login page → POST "Continue with Google" → the Google emulator (real RS256 ID token, PKCE, nonce) → callback, where Tsunagi exchanges the code and verifies the ID token server-to-server → a linked account → redirect URI → POST /token. Every email iteration uses an account of its own and every iteration its own client address (X-Forwarded-For, Tsunagi started with TRUST_PROXY=1), so the per-address and per-IP send limits stay on without being what is measured. The SMTP sink and the emulator run in the bench\'s own process.',
  ];

  const sink = new SmtpSink();
  const smtpUrl = await sink.start();
  const google = await new FakeGoogle().start();
  const tempDirs: string[] = [];
  const port = await freePort();
  const barePort = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const tsunagiEnv: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: 'development', LOG_LEVEL: 'warn', HOST: '127.0.0.1', PORT: String(port), ISSUER: issuer, SMTP_URL: smtpUrl,
    // The sign-in scenarios stand for many people behind a load balancer: each iteration's client
    // address comes in X-Forwarded-For, so the per-IP send limit applies per simulated person.
    TRUST_PROXY: '1',
    ...google.env(),
    ...IMAGE_ENV,
  };
  // An unset value must not reach a child as the string "undefined".
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'DATA_DIR']) delete tsunagiEnv[name];
  if (databaseUrl) tsunagiEnv.DATABASE_URL = databaseUrl;
  if (redisUrl) tsunagiEnv.REDIS_URL = redisUrl;
  if (!databaseUrl) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsunagi-bench-data-'));
    tempDirs.push(dir);
    tsunagiEnv.DATA_DIR = dir;
  }
  const clients: BenchClients = { cc: newClient('cc'), rs256: newClient('rs256'), es256: newClient('es256') };
  const runTag = Date.now().toString(36);
  const accountsForSignIn = wanted('email-signin')
    ? intEnv('BENCH_SIGNIN_ACCOUNTS', 300 * (settings.warmupSeconds + settings.durationSeconds)) : 0;
  const signIns: SignInSupport = {
    sink, google,
    emails: Array.from({ length: accountsForSignIn }, (_, i) => `bench.${runTag}.${i}@example.test`),
    googleSubs: wanted('google-signin') ? Array.from({ length: 16 }, (_, i) => `${runTag}${i}`) : [],
  };
  const scenarios: ScenarioResult[] = [];
  const peakRss: BenchResult['peakRssMb'] = {};
  let scaling: BenchResult['scaling'] = { skipped: 'not run' };
  let roundTrips: BenchResult['roundTrips'] = { skipped: 'not run' };

  try {
    if (databaseUrl) {
      log('migrating the database');
      execFileSync(process.execPath, [COMPILED.cli, 'migrate'], { cwd: ROOT, env: tsunagiEnv, stdio: ['ignore', 'ignore', 'inherit'] });
    }
    log('starting Tsunagi and the bare oidc-provider');
    const profile = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(process.env.BENCH_CPU_PROF)}`] : [];
    const nodeFlags = (process.env.BENCH_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
    const tsunagi = start('tsunagi', [...profile, ...nodeFlags, COMPILED.main], tsunagiEnv);
    const bare = start('bare', [COMPILED.bare], { ...process.env, PORT: String(barePort), BENCH_CLIENTS: JSON.stringify(clientMetadata(clients)) });
    await Promise.all([waitReady(tsunagi, `${issuer}/healthz`), waitReady(bare, `http://127.0.0.1:${barePort}/healthz`)]);
    log(`registering the clients${accountsForSignIn ? ` and preparing ${accountsForSignIn} accounts for the email-code sign-in` : ''}`);
    await registerInTsunagi(tsunagiEnv, clients, signIns.emails);

    log('signing in (Tsunagi: email code through the SMTP sink; bare: an interaction that signs in at once)');
    const email = `bench.${Date.now().toString(36)}@example.test`;
    const targets: Target[] = [
      await obtainTokens('bare', `http://127.0.0.1:${barePort}`, clients, async (browser, url) => {
        const page = await browser.follow(url.href, {}, (u) => u.startsWith(REDIRECT_URI));
        if (!page.url.startsWith(REDIRECT_URI)) throw new Error(`bare sign-in ended at ${page.url} (${page.res.status}): ${page.body.slice(0, 300)}`);
        return new URL(page.url);
      }),
      await obtainTokens('tsunagi', issuer, clients, async (browser, url) => (await signInWithEmail(browser, issuer, url, REDIRECT_URI, email, sink)).callback),
    ];
    const [bareTarget, tsunagiTarget] = targets as [Target, Target];
    if (signIns.googleSubs.length) {
      log(`signing ${signIns.googleSubs.length} emulated Google users up (each later sign-in is a linked one)`);
      await signUpGoogleUsers(issuer, clients.rs256, google, signIns.googleSubs);
    }

    log('measuring (bare, then Tsunagi, scenario by scenario)');
    for (const id of SCENARIO_ORDER.filter(wanted)) {
      const signIn = SIGN_IN_SCENARIOS.find((s) => s.id === id);
      if (signIn) {
        scenarios.push({ ...signIn, tsunagi: await measure(tsunagiTarget, id, signIns), note: 'Tsunagi only: the bare provider has no sign-in pages.' });
        continue;
      }
      const def = id === SSO_SCENARIO.id ? SSO_SCENARIO : httpScenarios(tsunagiTarget).find((s) => s.id === id);
      if (!def) continue;
      const bareM = await measure(bareTarget, id);
      const tsunagiM = await measure(tsunagiTarget, id);
      scenarios.push({ id, title: def.title, tokenEndpoint: def.tokenEndpoint, tsunagi: tsunagiM, bare: bareM });
    }
    peakRss.tsunagi = peakRssMb(tsunagi.child.pid);
    peakRss.bare = peakRssMb(bare.child.pid);
    await Promise.all([stop(tsunagi), stop(bare)]);

    const scalingScenarios = ['client-credentials', 'refresh-rs256', 'refresh-es256'].filter(wanted);
    if (process.env.BENCH_SCALING === '0' || scalingScenarios.length === 0) {
      scaling = { skipped: 'turned off for this run' };
    } else if (!databaseUrl) {
      scaling = { skipped: 'the embedded database belongs to one process; run with DATABASE_URL (and REDIS_URL) to measure 2 processes' };
    } else {
      log('scaling: 1 and 2 Tsunagi processes behind one port (node:cluster)');
      const rows: ScalingResult[] = scalingScenarios.map((scenario) => ({ scenario }));
      for (const workers of [1, 2] as const) {
        const cluster = start(`cluster-${workers}`, [COMPILED.cluster], { ...tsunagiEnv, BENCH_WORKERS: String(workers), BENCH_ENTRY: path.join(ROOT, COMPILED.main) });
        await waitReady(cluster, `${issuer}/healthz`);
        for (const row of rows) {
          log(`  ${workers} process${workers === 1 ? '' : 'es'}:`);
          const m = await measure(tsunagiTarget, row.scenario);
          if (workers === 1) row.one = m; else row.two = m;
        }
        if (workers === 2) {
          const pids = cluster.tail.map((l) => /^WORKERS (.+)$/.exec(l)?.[1]).find(Boolean)?.split(',').map(Number) ?? [];
          peakRss.tsunagiClusterWorkers = pids.map((p) => peakRssMb(p) ?? 0);
        }
        await stop(cluster);
      }
      scaling = rows;
    }

    if (process.env.BENCH_ROUND_TRIPS === '0' || (only && !only.has('round-trips'))) {
      roundTrips = { skipped: 'turned off for this run' };
    } else {
      log('counting database and Redis round trips per request (Tsunagi in-process)');
      roundTrips = await runScript<RoundTripCount[]>('bench/round-trips.ts', { target: tsunagiTarget, requests: 50 }, tsunagiEnv);
      for (const c of roundTrips) log(`  ${c.scenario.padEnd(20)} postgres ${c.postgresQueries / c.requests}  redis ${c.redisRoundTrips / c.requests} (${c.redisCommands / c.requests} commands)`);
    }
  } finally {
    for (const p of [...running]) await stop(p);
    await sink.close();
    await google.close();
    for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
  }

  const result: BenchResult = { machine, settings, scenarios, peakRssMb: peakRss, scaling, roundTrips, targets: checkTargets(scenarios), notes };
  const markdown = renderMarkdown(result);
  fs.mkdirSync(RESULTS, { recursive: true });
  const stamp = machine.date.replace(/[:.]/g, '-');
  const previous = readPrevious();
  fs.writeFileSync(path.join(RESULTS, `run-${stamp}.json`), `${JSON.stringify(result, null, 2)}\n`);
  fs.writeFileSync(path.join(RESULTS, `run-${stamp}.md`), markdown);
  if (!only) {
    fs.writeFileSync(path.join(RESULTS, 'latest.json'), `${JSON.stringify(result, null, 2)}\n`);
    fs.writeFileSync(path.join(RESULTS, 'latest.md'), markdown);
  }
  process.stdout.write(`\n${markdown}`);
  if (previous) {
    process.stdout.write(`\nCompared with the previous latest.json (${previous.machine.date}, ${previous.machine.backends}):\n`);
    for (const s of scenarios) {
      const before = previous.scenarios.find((p) => p.id === s.id)?.tsunagi;
      if (before && s.tsunagi) process.stdout.write(`  ${s.id.padEnd(20)} ${before.perSecond.toFixed(0).padStart(6)}/s -> ${s.tsunagi.perSecond.toFixed(0).padStart(6)}/s (${(((s.tsunagi.perSecond / before.perSecond) - 1) * 100).toFixed(0)}%)\n`);
    }
  }
  process.stdout.write(`\nWritten: bench/results/${only ? `run-${stamp}` : 'latest'}.{json,md}\n`);
  if (result.targets.some((t) => t.pass === false)) process.stdout.write('Some targets are not met (see the result column).\n');
}

function readPrevious(): BenchResult | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(RESULTS, 'latest.json'), 'utf8')) as BenchResult;
  } catch {
    return undefined;
  }
}

main().then(() => process.exit(0), (err: unknown) => {
  stopAllNow();
  process.stderr.write(`benchmark failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
