import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLinkApp } from './app.js';
import { loadLinkAppConfig, type LinkAppConfig } from './config.js';
import { openSql } from './database.js';
import { LinePlatform } from './line-platform.js';
import { CibaLinkService } from './ciba-link-service.js';
import { ExportLinkService } from './export-link-service.js';
import { LinkService } from './link-service.js';
import { LinkStore } from './link-store.js';
import { TsunagiTokenVerifier } from './tsunagi-tokens.js';

export interface RunningLinkApp { url: string; store: LinkStore; exportLinks: ExportLinkService; close(): Promise<void> }

/** Wires config -> database -> LINE + Tsunagi clients -> service -> HTTP, and listens. */
export async function startLinkApp(config: LinkAppConfig, host = '127.0.0.1'): Promise<RunningLinkApp> {
  const sql = await openSql(config.databaseUrl);
  const store = new LinkStore(sql);
  await store.createSchema();
  const line = new LinePlatform(config.lineApiBaseUrl, config.lineChannelId, config.lineMessagingAccessToken);
  const tokens = new TsunagiTokenVerifier(config.tsunagiIssuer, config.tsunagiClientId, config.tsunagiResource);
  const service = new LinkService(config, line, tokens, store);
  const cibaService = new CibaLinkService(config, line, tokens, store);
  const exportService = new ExportLinkService(config, line, tokens, store);
  const server = http.createServer(createLinkApp(config, service, cibaService, exportService).callback());
  await new Promise<void>((resolve) => server.listen(config.port, host, () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}`,
    store,
    exportLinks: exportService,
    async close() {
      await new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); });
      await sql.close();
    },
  };
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const app = await startLinkApp(loadLinkAppConfig(), process.env.HOST ?? '127.0.0.1');
  console.log(`LINE mini-app backend listening on ${app.url}`);
  const stop = () => { void app.close().then(() => process.exit(0)); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
