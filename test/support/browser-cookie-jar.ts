import type { BrowserCookies } from '../../src/upstream/browser-binding.js';

/** The cookies of one browser, for tests that call UpstreamProviders without HTTP (max-age is recorded, not enforced). */
export class BrowserCookieJar implements BrowserCookies {
  readonly cookies = new Map<string, { value: string; maxAgeSeconds: number }>();
  get(name: string): string | undefined { return this.cookies.get(name)?.value; }
  set(name: string, value: string, maxAgeSeconds: number): void { this.cookies.set(name, { value, maxAgeSeconds }); }
  clear(name: string): void { this.cookies.delete(name); }
}
