import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Router from '@koa/router';
import Koa from 'koa';
import type { LinkAppConfig } from './config.js';
import { ApiError } from './errors.js';
import type { CibaLinkService } from './ciba-link-service.js';
import type { ExportLinkService } from './export-link-service.js';
import type { LinkService, TsunagiProof } from './link-service.js';

const PUBLIC_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../public');
// The LIFF page's files, by URL path; nothing else is served from disk.
const PUBLIC_FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};
const MAX_BODY_BYTES = 16 * 1024;

export function createLinkApp(config: LinkAppConfig, links: LinkService, cibaLinks: CibaLinkService, exportLinks: ExportLinkService): Koa {
  const app = new Koa();
  const router = new Router();

  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      const known = err instanceof ApiError ? err : new ApiError(500, 'server_error', 'Something went wrong on our side. Try again later.');
      if (!(err instanceof ApiError)) console.error(err);
      ctx.status = known.status;
      ctx.body = { error: known.code, message: known.message };
    }
  });
  app.use(async (ctx, next) => {
    ctx.set('cache-control', 'no-store');
    ctx.set('x-content-type-options', 'nosniff');
    await next();
  });

  router.post('/link/start', async (ctx) => {
    const { nonce, expiresIn } = await links.start(lineToken(ctx.get('authorization')));
    ctx.body = { nonce, expires_in: expiresIn };
  });

  router.post('/link/complete', async (ctx) => {
    const token = lineToken(ctx.get('authorization'));
    const proof = parseProof(await readJson(ctx.req, ctx.get('content-type')));
    const { created, sub } = await links.complete(token, proof);
    ctx.status = created ? 201 : 200;
    ctx.body = { linked: true, created, sub };
  });

  router.delete('/link', async (ctx) => {
    await links.unlink(lineToken(ctx.get('authorization')));
    ctx.body = { unlinked: true };
  });

  // Method 2: the person types their email address or phone number; Tsunagi asks them to approve.
  router.post('/ciba/start', async (ctx) => {
    const token = lineToken(ctx.get('authorization'));
    const loginHint = field(await readJson(ctx.req, ctx.get('content-type')), 'login_hint')?.trim();
    if (!loginHint || loginHint.length > 254) throw new ApiError(400, 'invalid_login_hint', 'Enter an email address or a phone number.');
    const started = await cibaLinks.start(token, loginHint);
    ctx.body = { request_id: started.requestId, binding_message: started.bindingMessage, expires_in: started.expiresIn, interval: started.interval };
  });

  router.post('/ciba/poll', async (ctx) => {
    const token = lineToken(ctx.get('authorization'));
    const requestId = field(await readJson(ctx.req, ctx.get('content-type')), 'request_id');
    if (!requestId) throw new ApiError(400, 'invalid_request', 'The body must be JSON { "request_id": string }.');
    const polled = await cibaLinks.poll(token, requestId);
    if (polled.status === 'pending') {
      ctx.body = { status: 'pending', binding_message: polled.bindingMessage };
    } else {
      ctx.status = polled.created ? 201 : 200;
      ctx.body = { linked: true, created: polled.created, sub: polled.sub };
    }
  });

  // Method 3: the person types the link code from Tsunagi's account page.
  router.post('/link/code', async (ctx) => {
    const token = lineToken(ctx.get('authorization'));
    const code = field(await readJson(ctx.req, ctx.get('content-type')), 'code');
    if (!code || code.length > 32) throw new ApiError(400, 'invalid_code', 'Enter the 8-digit link code from your account page.');
    const { created, sub } = await exportLinks.linkByCode(token, code);
    ctx.status = created ? 201 : 200;
    ctx.body = { linked: true, created, sub };
  });

  router.post('/notify', async (ctx) => {
    const body = await readJson(ctx.req, ctx.get('content-type'));
    const sub = field(body, 'sub');
    const text = field(body, 'text');
    if (!sub || !text || text.length > 5000) throw new ApiError(400, 'invalid_request', 'The body must be JSON { "sub": string, "text": string of at most 5000 characters }.');
    await links.notify(ctx.get('x-notify-secret') || undefined, sub, text);
    ctx.body = { sent: true };
  });

  // What the LIFF page needs to start; all of it is public.
  router.get('/config.json', (ctx) => {
    ctx.body = {
      liffId: config.liffId ?? null, issuer: config.tsunagiIssuer, clientId: config.tsunagiClientId, resource: config.tsunagiResource ?? null,
      emailOrPhone: Boolean(config.tsunagiCiba),
      linkCode: Boolean(config.tsunagiExport),
    };
  });

  router.get(Object.keys(PUBLIC_FILES), async (ctx) => {
    const entry = PUBLIC_FILES[ctx.path];
    if (!entry) return;
    ctx.type = entry.type;
    ctx.set('cache-control', 'no-cache');
    ctx.body = await fs.readFile(path.join(PUBLIC_DIR, entry.file));
  });

  app.use(router.routes());
  app.use(router.allowedMethods());
  app.use((ctx) => {
    if (ctx.status === 404 && ctx.body === undefined) {
      ctx.status = 404;
      ctx.body = { error: 'not_found', message: `No such endpoint: ${ctx.method} ${ctx.path}` };
    }
  });
  return app;
}

function lineToken(authorization: string): string {
  const token = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/.exec(authorization)?.[1];
  if (!token) throw new ApiError(401, 'invalid_line_token', 'Send the LIFF access token as "Authorization: Bearer <token>" (liff.getAccessToken()).');
  return token;
}

function parseProof(body: unknown): TsunagiProof {
  const idToken = field(body, 'id_token');
  const accessToken = field(body, 'access_token');
  const nonce = field(body, 'nonce');
  if (idToken && !accessToken) return { idToken };
  if (accessToken && !idToken && nonce) return { accessToken, nonce };
  throw new ApiError(400, 'invalid_request', 'The body must be JSON with either { "id_token" } or { "access_token", "nonce" }.');
}

function field(body: unknown, key: string): string | undefined {
  const v = typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[key] : undefined;
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

async function readJson(req: NodeJS.ReadableStream, contentType: string): Promise<unknown> {
  if (contentType.split(';')[0]?.trim() !== 'application/json') throw new ApiError(415, 'unsupported_media_type', 'Send the body as application/json.');
  let raw = '';
  for await (const chunk of req) {
    raw += String(chunk);
    if (raw.length > MAX_BODY_BYTES) throw new ApiError(413, 'body_too_large', 'The request body is too large.');
  }
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    throw new ApiError(400, 'invalid_request', 'The request body is not valid JSON.');
  }
}
