import { AsyncLocalStorage } from 'node:async_hooks';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import pg from 'pg';
import { connectOutsideRequests } from '../../src/db/database.js';
import { openRedis, closeRedis, type RedisConnection } from '../../src/db/redis.js';
import { releaseFinishedRequests } from '../../src/server.js';

// A full garbage collection on demand (the flag can be set at run time; a fresh context sees it).
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/**
 * Whatever a request's async context holds (inside oidc-provider: the koa ctx with the request, the
 * response and all they reference) must be free once the request is done. A timer, a socket or a
 * promise keeps the context it was made in, so each of these made inside a request and outliving it
 * held a finished request: under the bench that was most of the process' memory (peak RSS 461 MB,
 * 195-262 MB live after a full GC; bench/results). Each test runs work inside a context holding a
 * watched object, as oidc-provider's AsyncLocalStorage does, and requires the object to be collected
 * once the work is done while the connection, client or timer it went through is still there.
 */
const requestContext = new AsyncLocalStorage<{ request: object }>();

/** How many of `refs` still hold their object after the current task and then one full GC. */
async function stillHeld(...refs: WeakRef<object>[]): Promise<number> {
  // A WeakRef's target lives at least until the current task ends: let it end, then one full GC.
  // Only one, and nothing in between: node-redis' timers are cleared once the signal they abort
  // is collected, by a FinalizationRegistry callback that runs in a later task, and until then the
  // timer holds the context it was armed in.
  await new Promise((r) => setImmediate(r));
  gc();
  return refs.filter((ref) => ref.deref() !== undefined).length;
}

/** Runs `work` inside a request context holding a fresh object; returns a WeakRef to that object. */
async function inRequest(work: () => Promise<unknown>): Promise<WeakRef<object>> {
  const request = { body: Buffer.alloc(1024) };
  const ref = new WeakRef(request);
  await requestContext.run({ request }, work);
  return ref;
}

const REDIS_URL = process.env.REDIS_URL;
const DATABASE_URL = process.env.DATABASE_URL;
if (!REDIS_URL) console.warn('REDIS_URL not set: that a Redis command does not hold its request was NOT tested');
if (!DATABASE_URL) console.warn('DATABASE_URL not set: that a Postgres connection does not hold the request that opened it was NOT tested');

describe('a finished request is not held by what it used', () => {
  (REDIS_URL ? describe : describe.skip)('Redis', () => {
    let redis: RedisConnection;
    beforeAll(async () => {
      // A long command deadline: node-redis' timer for each command lives this long.
      redis = await openRedis(REDIS_URL as string, { commandTimeoutMs: 60_000, connectTimeoutMs: 5_000 });
    });
    afterAll(async () => { await closeRedis(redis, 5_000); });

    it('holds no request through the timer of a command it answered', async () => {
      const ref = await inRequest(async () => {
        expect(await redis.get(`tsunagi-test:none:${Date.now()}`)).toBeNull();
        const [set] = await redis.multi().set(`tsunagi-test:ctx:${Date.now()}`, '1', { PX: 5_000 }).exec();
        expect(set).toBe('OK');
      });
      expect(await stillHeld(ref)).toBe(0);
    });
  });

  (DATABASE_URL ? describe : describe.skip)('Postgres', () => {
    let pool: pg.Pool;
    beforeAll(() => {
      pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2, query_timeout: 60_000 });
      connectOutsideRequests(pool);
    });
    afterAll(async () => { await pool.end(); });

    it('holds no request through the connection the request made the pool open', async () => {
      const ref = await inRequest(async () => {
        const { rows } = await pool.query<{ n: number }>('SELECT 1 AS n');
        expect(rows).toEqual([{ n: 1 }]);
      });
      // The connection the query opened is still in the pool, idle.
      expect(pool.totalCount).toBe(1);
      expect(pool.idleCount).toBe(1);
      expect(await stillHeld(ref)).toBe(0);
    });

    it('holds no request through a transaction client it checked out and returned', async () => {
      const ref = await inRequest(async () => {
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          await client.query('SELECT 1');
          await client.query('COMMIT');
        } finally {
          client.release();
        }
      });
      expect(pool.totalCount).toBeGreaterThanOrEqual(1);
      expect(await stillHeld(ref)).toBe(0);
    });
  });

  describe('HTTP keep-alive', () => {
    let server: http.Server;
    const watched: WeakRef<object>[] = [];
    beforeAll(async () => {
      // A handler that answers inside a request context, as oidc-provider does.
      server = http.createServer((_req, res) => {
        const request = { body: Buffer.alloc(1024) };
        watched.push(new WeakRef(request));
        requestContext.run({ request }, () => { res.end('ok'); });
      });
      server.keepAliveTimeout = 65_000;
      releaseFinishedRequests(server);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    });
    afterAll(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });

    it('holds no request through the keep-alive timer of the connection it was answered on', async () => {
      const { port } = server.address() as AddressInfo;
      // A bare socket as the client (an http.Agent would arm timers of its own in this process):
      // two requests, one after the other, on one kept-alive connection.
      const socket = net.connect(port, '127.0.0.1');
      let received = '';
      const responses = (n: number) => new Promise<void>((resolve) => {
        const check = () => { if ((received.match(/HTTP\/1\.1 200/g) ?? []).length >= n && received.endsWith('ok')) { socket.off('data', onData); resolve(); } };
        const onData = (chunk: Buffer) => { received += chunk.toString(); check(); };
        socket.on('data', onData);
      });
      try {
        socket.write('GET /one HTTP/1.1\r\nHost: x\r\n\r\n');
        await responses(1);
        socket.write('GET /two HTTP/1.1\r\nHost: x\r\n\r\n');
        await responses(2);
        expect(received).toMatch(/keep-alive/i);
        expect(socket.destroyed).toBe(false);
        expect(watched).toHaveLength(2);
        // Node caches the Date header for up to a second with a timer armed by the response that
        // filled the cache (so inside that request): wait it out. Timers due earlier fire first, and
        // the keep-alive timer is 65 s away, so a slow machine cannot turn this into a pass.
        await new Promise((r) => setTimeout(r, 1_100));
        expect(await stillHeld(...watched)).toBe(0);
      } finally {
        socket.destroy();
      }
    });
  });
});
