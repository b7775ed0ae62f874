import { createClient } from 'redis';

export type RedisConnection = ReturnType<typeof createClient>;

export async function openRedis(url: string): Promise<RedisConnection> {
  const client = createClient({ url, socket: { reconnectStrategy: (retries) => Math.min(retries * 100, 2000) } });
  client.on('error', () => { /* reconnects; readiness reports it */ });
  await client.connect();
  return client;
}
