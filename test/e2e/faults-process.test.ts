import http from 'node:http';
import net from 'node:net';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import pg from 'pg';
import { openDatabase } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { SmtpSink } from '../fakes/smtp-sink.js';
import { Browser, csrfOf } from '../support/browserless.js';
import { TsunagiProcess } from '../support/faults.js';
import { describeBackends, uniqueEmail } from '../support/harness.js';
import { signInWithEmail } from './support.js';

// Tsunagi as its own process, as it runs in production: SIGTERM under keep-alive load, back-channel
// logout through the real outbound fetch (oidc-provider's SSRF guard is only active outside jest),
// and kill -9 in the middle of signups followed by SQL consistency checks.

const DATABASE_URL = process.env.DATABASE_URL;
// A process of its own starts in 5-40 s (tsx, and the embedded database migrating) on a busy 2-core machine.
const PROCESS_TEST_MS = 180_000;

async function migrated(): Promise<void> {
  if (!DATABASE_URL) return;
  const db = await openDatabase({ databaseUrl: DATABASE_URL, dataDir: 'memory://', poolMax: 1 });
  try { await migrate(db.pool); } finally { await db.close(); }
}

interface RawResponse { status: number; headers: Record<string, string>; body: string }

/** One keep-alive TCP connection on which the test writes raw HTTP and reads the responses in order. */
class RawConnection {
  readonly socket: net.Socket;
  readonly closed: Promise<void>;
  private buffer = '';
  private readonly responses: RawResponse[] = [];
  private readonly waiters: Array<(r: RawResponse) => void> = [];

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()));
    this.socket.on('data', (chunk: Buffer) => { this.buffer += chunk.toString('latin1'); this.parse(); });
  }

  async connected(): Promise<this> {
    if (!this.socket.connecting) return this;
    await new Promise<void>((resolve, reject) => { this.socket.once('connect', resolve); this.socket.once('error', reject); });
    return this;
  }

  write(text: string): void { this.socket.write(text); }

  next(withinMs = 10_000): Promise<RawResponse> {
    const ready = this.responses.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no response')), withinMs);
      this.waiters.push((r) => { clearTimeout(timer); resolve(r); });
    });
  }

  private parse(): void {
    for (;;) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [statusLine = '', ...lines] = this.buffer.slice(0, end).split('\r\n');
      const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      const length = Number(headers['content-length'] ?? 0);
      if (this.buffer.length < end + 4 + length) return;
      const response = { status: Number(statusLine.split(' ')[1]), headers, body: this.buffer.slice(end + 4, end + 4 + length) };
      this.buffer = this.buffer.slice(end + 4 + length);
      const waiter = this.waiters.shift();
      if (waiter) waiter(response); else this.responses.push(response);
    }
  }
}

describe(`SIGTERM under keep-alive load (its own process; ${describeBackends()})`, () => {
  const tsunagi = new TsunagiProcess();
  afterAll(() => tsunagi.stop());

  it('turns /readyz 503 at once, closes keep-alive and idle connections, finishes in-flight requests and exits within the drain time', async () => {
    await migrated();
    await tsunagi.start({ DATABASE_URL, REDIS_URL: process.env.REDIS_URL, SHUTDOWN_DRAIN_SECONDS: '2' });

    // Keep-alive load: four clients, one connection each, one request after the other.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    let loading = true;
    const afterTerm: Array<{ status: number; connection: string | undefined }> = [];
    let drainingSeen = false;
    const loop = async () => {
      while (loading) {
        const sentWhileDraining = drainingSeen;
        const outcome = await new Promise<{ status: number; connection: string | undefined } | undefined>((resolve) => {
          const req = http.get(`${tsunagi.url}/healthz`, { agent }, (res) => {
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }));
          });
          req.on('error', () => resolve(undefined)); // refused or reset once the server stops accepting
        });
        if (!outcome) return; // the server is gone for this client
        if (sentWhileDraining) afterTerm.push(outcome);
      }
    };
    const loops = [loop(), loop(), loop(), loop()];

    // An idle keep-alive connection, a request whose body is half sent, /readyz whose head is half sent.
    const idle = await new RawConnection(tsunagi.port).connected();
    idle.write('GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n');
    expect((await idle.next()).status).toBe(200);
    const readyBefore = await new RawConnection(tsunagi.port).connected();
    readyBefore.write('GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n');
    expect((await readyBefore.next()).status).toBe(200);
    const body = 'grant_type=client_credentials';
    const inFlight = await new RawConnection(tsunagi.port).connected();
    inFlight.write(`POST /token HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`);
    readyBefore.write('GET /readyz HTTP/1.1\r\nHost: t\r\n');
    const stuck = await new RawConnection(tsunagi.port).connected();
    stuck.write(`POST /token HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\ngrant`);

    const sentAt = performance.now();
    tsunagi.signal('SIGTERM');
    await tsunagi.waitForLog((l) => l.msg === 'shutting down', 5000);
    drainingSeen = true;

    // The idle connection is closed by the server.
    await idle.closed;
    // /readyz, asked on a connection the server was already reading: 503 draining, and the connection closes.
    readyBefore.write('\r\n');
    const ready = await readyBefore.next();
    expect(ready.status).toBe(503);
    expect(ready.headers.connection).toBe('close');
    expect(JSON.parse(ready.body)).toMatchObject({ status: 'draining' });
    await readyBefore.closed;
    // The request in flight finishes (an OAuth answer, not a cut connection) and closes its connection.
    inFlight.write(body.slice(10));
    const finished = await inFlight.next();
    expect(finished.status).toBe(400); // no client authentication: the body was read to the end
    expect(JSON.parse(finished.body)).toMatchObject({ error: 'invalid_request' });
    expect(finished.headers.connection).toBe('close');
    await inFlight.closed;

    // The request that never completes is cut at the drain deadline, and the process exits cleanly.
    const exit = await tsunagi.exited;
    await stuck.closed;
    expect(exit.code).toBe(0);
    // SHUTDOWN_DRAIN_SECONDS=2, then the pools close; the bound is generous for a busy machine (main.ts ends a
    // process that still hangs 5 s after the drain with exit code 1, which the code check above would catch).
    expect((exit.at - sentAt) / 1000).toBeLessThan(2 + 6);
    loading = false;
    await Promise.all(loops);
    agent.destroy();
    // Every keep-alive request sent once the process was draining got an answer that closes its connection.
    expect(afterTerm.every((r) => r.connection === 'close')).toBe(true);
  }, PROCESS_TEST_MS);
});

/** A relying party on a loopback address, receiving back-channel logout tokens. */
class LogoutReceiver {
  readonly tokens: string[] = [];
  private readonly server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString(); });
    req.on('end', () => {
      const token = new URLSearchParams(body).get('logout_token');
      if (req.method === 'POST' && req.url === '/backchannel' && token) this.tokens.push(token);
      res.writeHead(200).end();
    });
  });
  origin = '';

  async start(host: string): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, host, () => resolve()));
    this.origin = `http://${host}:${(this.server.address() as net.AddressInfo).port}`;
    return this.origin;
  }

  close(): Promise<void> { return new Promise((resolve) => this.server.close(() => resolve())); }
}

describe(`back-channel logout to relying parties on private addresses (its own process; ${describeBackends()})`, () => {
  const tsunagi = new TsunagiProcess();
  const sink = new SmtpSink();
  const allowed = new LogoutReceiver();
  const notAllowed = new LogoutReceiver();
  const INITIAL_ACCESS_TOKEN = 'fault-suite-initial-access-token-0123456789';

  afterAll(async () => {
    await tsunagi.stop();
    await sink.close();
    await allowed.close();
    await notAllowed.close();
  });

  async function register(origin: string): Promise<{ id: string; secret: string; redirectUri: string }> {
    const redirectUri = `${origin}/cb`;
    const res = await fetch(`${tsunagi.url}/reg`, {
      method: 'POST',
      headers: { authorization: `Bearer ${INITIAL_ACCESS_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        redirect_uris: [redirectUri], post_logout_redirect_uris: [`${origin}/bye`], response_types: ['code'], grant_types: ['authorization_code'],
        backchannel_logout_uri: `${origin}/backchannel`, backchannel_logout_session_required: true,
      }),
    });
    expect(res.status).toBe(201);
    const client = await res.json() as { client_id: string; client_secret: string };
    return { id: client.client_id, secret: client.client_secret, redirectUri };
  }

  async function signIn(browser: Browser, client: { id: string; secret: string; redirectUri: string }, email: string) {
    const config = await oidc.discovery(new URL(tsunagi.url), client.id, { client_secret: client.secret }, oidc.ClientSecretBasic(client.secret), { execute: [oidc.allowInsecureRequests] });
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: client.redirectUri, scope: 'openid email', state,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    const { callback } = await signInWithEmail(browser, tsunagi.url, url, client.redirectUri, email, sink, { consent: true });
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state });
    return tokens.id_token as string;
  }

  it('delivers a verifiable logout+jwt to an allowed host, refuses one not allowed, and logs the refusal with the client id', async () => {
    await migrated();
    await allowed.start('127.0.0.1');
    await notAllowed.start('127.0.0.2'); // loopback too, but not in OUTBOUND_ALLOW_PRIVATE
    await tsunagi.start({
      DATABASE_URL, REDIS_URL: process.env.REDIS_URL, SMTP_URL: await sink.start(), INITIAL_ACCESS_TOKEN, OUTBOUND_ALLOW_PRIVATE: '127.0.0.1/32',
    });
    const rpAllowed = await register(allowed.origin);
    const rpRefused = await register(notAllowed.origin);

    const browser = new Browser();
    const email = uniqueEmail('bcl');
    const idToken = await signIn(browser, rpAllowed, email);
    await signIn(browser, rpRefused, email);
    const { sid, sub } = decodeJwt(idToken);
    expect(sid).toEqual(expect.any(String));

    // RP-initiated logout of the whole session, confirmed on Tsunagi's page.
    const logoutPage = await browser.follow(`${tsunagi.url}/session/end?${new URLSearchParams({ id_token_hint: idToken, post_logout_redirect_uri: `${allowed.origin}/bye`, client_id: rpAllowed.id })}`);
    const action = /action="([^"]+)"/.exec(logoutPage.body)?.[1] as string;
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(logoutPage.body)?.[1] as string;
    expect(csrfOf).toBeDefined();
    const done = await browser.request(new URL(action.replace(/&amp;/g, '&'), tsunagi.url).href, { form: { xsrf, logout: 'yes' } });
    expect(done.res.status).toBe(303);

    // The allowed relying party got a logout token it can verify against /jwks.
    expect(allowed.tokens).toHaveLength(1);
    const jwks = createRemoteJWKSet(new URL(`${tsunagi.url}/jwks`));
    const { payload, protectedHeader } = await jwtVerify(allowed.tokens[0] as string, jwks, { issuer: tsunagi.url, audience: rpAllowed.id, typ: 'logout+jwt' });
    expect(protectedHeader.typ).toBe('logout+jwt');
    expect(payload.events).toEqual({ 'http://schemas.openid.net/event/backchannel-logout': {} });
    expect(payload.sub).toBe(sub);
    expect(payload.sid).toBe(sid);
    expect(payload.nonce).toBeUndefined();
    expect(payload.jti).toEqual(expect.any(String));

    // The other one was refused, and the operator can see which client and why.
    expect(notAllowed.tokens).toHaveLength(0);
    const warning = await tsunagi.waitForLog((l) => l.msg === 'back-channel logout not delivered' && l.clientId === rpRefused.id, 5000);
    expect(warning.level).toBe(40);
    expect(String(warning.reason)).toContain('127.0.0.2');
    expect(String(warning.reason)).toContain('OUTBOUND_ALLOW_PRIVATE');
    expect(tsunagi.logs.some((l) => l.msg === 'back-channel logout not delivered' && l.clientId === rpAllowed.id)).toBe(false);
  }, PROCESS_TEST_MS);
});

const describeWithPostgres = DATABASE_URL ? describe : describe.skip;
if (!DATABASE_URL) console.warn('DATABASE_URL not set: the kill -9 consistency test did NOT run (the embedded in-memory database dies with the process)');

describeWithPostgres('kill -9 in the middle of signups (its own process, real Postgres)', () => {
  const tsunagi = new TsunagiProcess();
  const sink = new SmtpSink();
  afterAll(async () => {
    await tsunagi.stop();
    await sink.close();
  });

  it('leaves no half-written account, email or duplicate behind, and loses nothing confirmed', async () => {
    const startedAt = new Date();
    await migrated();
    await tsunagi.start({ DATABASE_URL, REDIS_URL: process.env.REDIS_URL, SMTP_URL: await sink.start(), INITIAL_ACCESS_TOKEN: 'fault-suite-initial-access-token-0123456789' });
    const reg = await fetch(`${tsunagi.url}/reg`, {
      method: 'POST',
      headers: { authorization: 'Bearer fault-suite-initial-access-token-0123456789', 'content-type': 'application/json' },
      body: JSON.stringify({ redirect_uris: ['http://127.0.0.1:9/cb'], response_types: ['code'], grant_types: ['authorization_code'] }),
    });
    const client = await reg.json() as { client_id: string; client_secret: string };
    const tag = `kill${Date.now().toString(36)}`;
    const emails = Array.from({ length: 12 }, (_, i) => `${tag}.${i}@example.test`);

    // Signups race each other (two browsers per address); the process is killed once the first one is through.
    const config = await oidc.discovery(new URL(tsunagi.url), client.client_id, { client_secret: client.client_secret }, oidc.ClientSecretBasic(client.client_secret), { execute: [oidc.allowInsecureRequests] });
    const completed = new Set<string>();
    let firstDone: () => void = () => undefined;
    const oneThrough = new Promise<void>((resolve) => { firstDone = resolve; });
    const attempts = emails.flatMap((email) => [0, 1].map(async () => {
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: 'http://127.0.0.1:9/cb', scope: 'openid email',
        code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()), code_challenge_method: 'S256',
      });
      try {
        await signInWithEmail(new Browser(), tsunagi.url, url, 'http://127.0.0.1:9/cb', email, sink, { consent: true });
        completed.add(email);
        firstDone();
        return 'done';
      } catch {
        return 'cut';
      }
    }));
    await Promise.race([oneThrough, Promise.all(attempts)]);
    expect(completed.size).toBeGreaterThan(0);
    tsunagi.signal('SIGKILL');
    const exit = await tsunagi.exited;
    expect(exit.signal).toBe('SIGKILL');
    const outcomes = await Promise.all(attempts);
    expect(outcomes).toContain('cut');

    const db = new pg.Client({ connectionString: DATABASE_URL });
    await db.connect();
    try {
      const like = `${tag}.%@example.test`;
      const { rows } = await db.query<{ email: string; account_id: string; is_primary: boolean; verified: boolean; emails_of_account: number }>(
        `SELECT e.email, e.account_id, e.is_primary, e.verified_at IS NOT NULL AS verified,
                (SELECT count(*)::int FROM account_emails o WHERE o.account_id = e.account_id) AS emails_of_account
           FROM account_emails e WHERE e.email LIKE $1`, [like]);
      // Nothing that was confirmed before the kill is lost.
      for (const email of completed) expect(rows.map((r) => r.email)).toContain(email);
      // One account per address (the two racing browsers did not make two), each whole: its one email
      // verified and primary.
      expect(new Set(rows.map((r) => r.email)).size).toBe(rows.length);
      for (const row of rows) expect(row).toMatchObject({ is_primary: true, verified: true, emails_of_account: 1 });
      // No account of these signups was left without its email (account and email are one transaction).
      const { rows: bare } = await db.query(
        `SELECT a.id FROM accounts a WHERE a.created_at >= $1 AND NOT EXISTS (SELECT 1 FROM account_emails e WHERE e.account_id = a.id)
           AND NOT EXISTS (SELECT 1 FROM account_phones p WHERE p.account_id = a.id)
           AND NOT EXISTS (SELECT 1 FROM upstream_identities u WHERE u.account_id = a.id)
           AND EXISTS (SELECT 1 FROM audit_events ev WHERE ev.account_id = a.id AND ev.client_id = $2)`, [startedAt, client.client_id]);
      expect(bare).toEqual([]);
    } finally {
      await db.end();
    }
  }, PROCESS_TEST_MS);
});
