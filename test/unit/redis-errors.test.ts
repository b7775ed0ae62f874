import { ErrorReply, MultiErrorReply, SimpleError } from 'redis';
import { isRedisUnavailableReply } from '../../src/db/redis.js';

// Which Redis error replies Tsunagi answers with 503 + Retry-After (a failover or a resharding in
// progress) and which pass through as the bugs they are.
describe('isRedisUnavailableReply', () => {
  it.each([
    'READONLY You can\'t write against a read only replica.',
    'LOADING Redis is loading the dataset in memory',
    'MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to \'no\'.',
    'NOREPLICAS Not enough good replicas to write.',
    'CLUSTERDOWN The cluster is down',
    'TRYAGAIN Multiple keys request during rehashing of slot',
    'MOVED 3999 127.0.0.1:7001',
    'ASK 3999 127.0.0.1:7001',
  ])('calls "%s" unavailable', (message) => {
    expect(isRedisUnavailableReply(new SimpleError(message))).toBe(true);
  });

  it.each([
    'WRONGTYPE Operation against a key holding the wrong kind of value',
    'CROSSSLOT Keys in request don\'t hash to the same slot',
    'ERR Error running script',
    'NOSCRIPT No matching script. Please use EVAL.',
    'EXECABORT Transaction discarded because of previous errors.',
    'ASKING is not a redirect',
  ])('lets "%s" through as an error of the command', (message) => {
    expect(isRedisUnavailableReply(new SimpleError(message))).toBe(false);
  });

  it('looks into the replies of a failed MULTI', () => {
    const down = new MultiErrorReply([new ErrorReply('CLUSTERDOWN The cluster is down')], [0]);
    const wrong = new MultiErrorReply([new ErrorReply('WRONGTYPE Operation against a key holding the wrong kind of value')], [0]);
    expect(isRedisUnavailableReply(down)).toBe(true);
    expect(isRedisUnavailableReply(wrong)).toBe(false);
  });
});
