// A minimal browser for driving Tsunagi's HTML forms over real HTTP: a cookie jar, manual redirects,
// and helpers to read forms. Enough for the protocol end-to-end tests; the Chromium tests see pixels.

export class CookieJar {
  private cookies = new Map<string, string>();

  store(res: Response): void {
    for (const raw of res.headers.getSetCookie()) {
      const [pair] = raw.split(';');
      const eq = pair?.indexOf('=') ?? -1;
      if (!pair || eq < 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (/expires=Thu, 01 Jan 1970/i.test(raw) || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

export class Browser {
  readonly jar = new CookieJar();
  constructor(readonly headers: Record<string, string> = {}) {}

  async request(url: string, init: { method?: string; form?: Record<string, string> } = {}): Promise<{ res: Response; body: string; url: string }> {
    const res = await fetch(url, {
      method: init.method ?? (init.form ? 'POST' : 'GET'),
      redirect: 'manual',
      headers: {
        ...this.headers,
        cookie: this.jar.header(),
        ...(init.form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      body: init.form ? new URLSearchParams(init.form).toString() : undefined,
    });
    this.jar.store(res);
    return { res, body: await res.text(), url };
  }

  /** Follows redirects (GET) until a non-redirect or a URL for which stop() says so. */
  async follow(url: string, init: { method?: string; form?: Record<string, string> } = {}, stop: (u: string) => boolean = () => false): Promise<{ res: Response; body: string; url: string }> {
    let current = await this.request(url, init);
    for (let i = 0; i < 20 && current.res.status >= 300 && current.res.status < 400; i++) {
      const next = new URL(current.res.headers.get('location') as string, current.url).href;
      if (stop(next)) return { ...current, url: next };
      current = await this.request(next);
    }
    return current;
  }
}

export function csrfOf(html: string): string {
  const m = /name="_csrf" value="([^"]+)"/.exec(html);
  if (!m?.[1]) throw new Error('no csrf token on the page');
  return m[1];
}

export function formAction(html: string, contains: string): string {
  const re = /<form[^>]*action="([^"]+)"/g;
  for (const m of html.matchAll(re)) if (m[1]?.includes(contains)) return m[1].replace(/&amp;/g, '&');
  throw new Error(`no form posting to *${contains}*`);
}
