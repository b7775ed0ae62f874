import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Context, Next } from 'koa';

const ASSETS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../views/assets');
const TYPES: Record<string, string> = { '.css': 'text/css; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.svg': 'image/svg+xml' };
// Browser libraries served from Tsunagi's own origin (no CDN: the CSP allows scripts from 'self' only).
const VENDOR: Record<string, string> = {
  '/assets/simplewebauthn-browser.js': path.join(path.dirname(createRequire(import.meta.url).resolve('@simplewebauthn/browser')), '../dist/bundle/index.umd.min.js'),
};

/** Serves views/assets/* (read once at start) under /assets/. */
export function assets() {
  const files = new Map<string, { body: Buffer; type: string }>();
  for (const name of fs.readdirSync(ASSETS_DIR)) {
    const type = TYPES[path.extname(name)];
    if (type) files.set(`/assets/${name}`, { body: fs.readFileSync(path.join(ASSETS_DIR, name)), type });
  }
  for (const [url, file] of Object.entries(VENDOR)) files.set(url, { body: fs.readFileSync(file), type: TYPES['.js'] as string });
  return async (ctx: Context, next: Next) => {
    const file = ctx.method === 'GET' || ctx.method === 'HEAD' ? files.get(ctx.path) : undefined;
    if (!file) return next();
    ctx.type = file.type;
    ctx.set('Cache-Control', 'public, max-age=3600');
    ctx.body = file.body;
  };
}
