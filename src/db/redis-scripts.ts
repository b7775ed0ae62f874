import { defineScript, type CommandParser } from 'redis';

// Lua run by Redis. Each script touches only the keys it is given in KEYS (a Redis Cluster routes a
// script by its keys and refuses a key computed inside it), and is sent by its SHA1 (EVALSHA): on
// NOSCRIPT (a Redis restarted, a replica promoted, a new cluster node) node-redis sends the body
// once with EVAL, which also caches it there again.

/**
 * Marks an artifact consumed at ARGV[1] (seconds) if it exists and is not consumed yet: 1 when this
 * call did it, 0 when it was consumed before (or is gone). HSETNX alone would create a key without
 * a TTL for an artifact that has expired; the check and the set are one atomic step, so of two
 * requests redeeming the same code exactly one wins.
 */
export const consumeArtifact = defineScript({
  NUMBER_OF_KEYS: 1,
  SCRIPT: `if redis.call('exists', KEYS[1]) == 0 then return 0 end
return redis.call('hsetnx', KEYS[1], 'consumed', ARGV[1])`,
  parseCommand(parser: CommandParser, key: string, consumedAtSeconds: number) {
    parser.pushKey(key);
    parser.push(String(consumedAtSeconds));
  },
  // The reply is Lua's integer as is; the cast is how node-redis types a script's reply (its own docs do the same).
  transformReply: undefined as unknown as () => 0 | 1,
});

export const REDIS_SCRIPTS = { consumeArtifact };
