import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../../src/config.js';
import { DeadlineExceeded, DependencyUnavailable, isDatabaseUnavailable, unavailableDependency, withDeadline } from '../../src/failures/dependency.js';
import { Readiness } from '../../src/web/readiness.js';
import { isSpecialUseAddress, outboundFetch, OutboundRequestRefused } from '../../src/oidc/outbound-fetch.js';

const never = () => new Promise<never>(() => undefined);

describe('deadlines and dependency errors', () => {
  it('rejects with DeadlineExceeded when the work never settles, and passes a result through', async () => {
    await expect(withDeadline(never(), 20, 'redis GET')).rejects.toBeInstanceOf(DeadlineExceeded);
    await expect(withDeadline(Promise.resolve(7), 1000, 'x')).resolves.toBe(7);
  });

  it('tells an unreachable or slow database from a bad query', () => {
    expect(isDatabaseUnavailable(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isDatabaseUnavailable(new Error('timeout exceeded when trying to connect'))).toBe(true);
    expect(isDatabaseUnavailable(new Error('Query read timeout'))).toBe(true);
    expect(isDatabaseUnavailable(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isDatabaseUnavailable(Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' }))).toBe(true);
    expect(isDatabaseUnavailable(Object.assign(new Error('the database system is starting up'), { code: '57P03' }))).toBe(true);
    expect(isDatabaseUnavailable(Object.assign(new Error('duplicate key value'), { code: '23505' }))).toBe(false);
    expect(isDatabaseUnavailable(Object.assign(new Error('syntax error'), { code: '42601' }))).toBe(false);
  });

  it('is rendered by oidc-provider as an exposed 503 temporarily_unavailable, and found through causes', () => {
    const err = new DependencyUnavailable('redis', 'The client is offline');
    expect(err).toMatchObject({ expose: true, statusCode: 503, message: 'temporarily_unavailable', error: 'temporarily_unavailable' });
    expect(err.error_description).toContain('redis');
    expect(unavailableDependency(new Error('flow failed', { cause: err }))).toBe(err);
    expect(unavailableDependency(new Error('plain'))).toBeUndefined();
  });
});

describe('readiness', () => {
  it('names the dependency that does not answer in time and the one that fails', async () => {
    const readiness = new Readiness({ database: never, redis: () => Promise.reject(new Error('offline')), other: () => Promise.resolve() }, 30);
    expect(await readiness.report()).toEqual({ ready: false, status: 'not_ready', checks: { database: 'timeout', redis: 'unreachable', other: 'ok' } });
  });

  it('is not ready once draining, without asking the dependencies', async () => {
    let asked = 0;
    const readiness = new Readiness({ database: async () => { asked += 1; } });
    expect((await readiness.report()).ready).toBe(true);
    readiness.startDraining();
    expect(await readiness.report()).toEqual({ ready: false, status: 'draining', checks: {} });
    expect(asked).toBe(1);
  });
});

describe('OUTBOUND_ALLOW_PRIVATE', () => {
  const config = (value: string) => loadConfig({ NODE_ENV: 'test', OUTBOUND_ALLOW_PRIVATE: value }).outboundAllowPrivate;

  it('parses hosts, addresses and networks, and reports what is neither', () => {
    expect(config('10.0.0.0/8, rp.internal ,127.0.0.1,fd00::/8')).toEqual({
      hosts: ['rp.internal'],
      networks: [
        { address: '10.0.0.0', prefix: 8, family: 'ipv4' },
        { address: '127.0.0.1', prefix: 32, family: 'ipv4' },
        { address: 'fd00::', prefix: 8, family: 'ipv6' },
      ],
    });
    expect(() => config('10.0.0.0/33,http://x')).toThrow(/OUTBOUND_ALLOW_PRIVATE: "10.0.0.0\/33".*\n.*OUTBOUND_ALLOW_PRIVATE: "http:\/\/x"/);
  });

  it('knows the special-use addresses (IPv4, IPv6 and IPv4-mapped)', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '::1', 'fd12::1', 'fe80::1', '::ffff:10.0.0.1']) {
      expect([a, isSpecialUseAddress(a)]).toEqual([a, true]);
    }
    for (const a of ['8.8.8.8', '172.32.0.1', '2606:4700::1111', '::ffff:8.8.8.8']) expect([a, isSpecialUseAddress(a)]).toEqual([a, false]);
  });

  describe('the fetch oidc-provider uses', () => {
    let server: http.Server;
    let port = 0;
    const received: string[] = [];
    beforeAll(async () => {
      server = http.createServer((req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => { body += c.toString(); });
        req.on('end', () => { received.push(`${req.method} ${req.url} ${body}`); res.writeHead(200, { 'content-type': 'text/plain' }).end('ok'); });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
      port = (server.address() as AddressInfo).port;
    });
    afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

    it('refuses a private address that is not allowed, by IP and by a name that resolves to it, and sends nothing', async () => {
      const fetch = outboundFetch({ hosts: [], networks: [{ address: '10.0.0.0', prefix: 8, family: 'ipv4' }] });
      const before = received.length;
      await expect(fetch(`http://127.0.0.1:${port}/x`, { method: 'POST', body: 'a=1' })).rejects.toBeInstanceOf(OutboundRequestRefused);
      await expect(fetch(`http://localhost:${port}/x`, { method: 'POST', body: 'a=1' })).rejects.toThrow(/OUTBOUND_ALLOW_PRIVATE/);
      expect(received.length).toBe(before);
    });

    it('reaches an allowed network or host, with the body and the status', async () => {
      const cases: Array<[ReturnType<typeof outboundFetch>, string]> = [
        [outboundFetch({ hosts: [], networks: [{ address: '127.0.0.0', prefix: 8, family: 'ipv4' }] }), '127.0.0.1'],
        [outboundFetch({ hosts: ['localhost'], networks: [] }), 'localhost'],
      ];
      for (const [fetch, host] of cases) {
        const res = await fetch(`http://${host}:${port}/logout`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ logout_token: 't' }) });
        expect(res.status).toBe(200);
        expect(await res.text()).toBe('ok');
      }
      expect(received.slice(-2)).toEqual(['POST /logout logout_token=t', 'POST /logout logout_token=t']);
    });
  });
});
